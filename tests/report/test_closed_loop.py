"""Closed-loop runs with the shipped bundle: the gate really sits between policy and robot.

* shadow mode reproduces ``simulate_episode`` byte for byte (the open run *is* the ungated
  episode, so paired comparisons are fair);
* an enforced STOP holds the arm (zero end-effector delta, gripper held) and SLOW scales it;
* a lighting shift with a mid-episode onset stops the gated robot at the onset (the monitor
  sees it: episode AUROC 1.00 in evaluate) while the open run keeps moving;
* the MCAP recording plays back with the expected topics and counts, the strip has one frame per
  step.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from world_monitor.defaults import default_bundle
from world_monitor.report.closed_loop import (
    ClosedLoopSpec,
    GatedController,
    PolicySpec,
    classify_outcome,
    run_closed_loop,
)
from world_monitor.report.recording import strip_frames, write_episode_mcap, write_strip
from world_monitor.runtime.monitor import load_monitor
from world_monitor.runtime.types import Decision
from world_monitor.sim import simulate_episode

SEED = 6_000_000
#: A dynamics episode of the nominal policy that the shipped bundle warns about (SLOW at t=16)
#: and stops at t=24 with the conditioning, and whose open run misses the goal
#: (runs/evaluate-policy6, README).
DYNAMICS_SEED = 6_000_005
ONSET = 20


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory):
    return load_monitor(default_bundle(), "onnxruntime", engines_dir=tmp_path_factory.mktemp("eng"))


@pytest.fixture(scope="module")
def lighting_runs(monitor):
    spec = ClosedLoopSpec(PolicySpec(), "lighting", SEED, ONSET)
    return (
        run_closed_loop(monitor, spec, gated=False, keep_assessments=True),
        run_closed_loop(monitor, spec, gated=True, keep_assessments=True),
    )


def test_shadow_run_is_the_ungated_episode(lighting_runs) -> None:
    open_run, _ = lighting_runs
    ref = simulate_episode("lighting", SEED, onset=ONSET)
    assert np.array_equal(open_run.episode.frames, ref.frames)
    assert np.array_equal(open_run.episode.actions, ref.actions)
    assert open_run.episode.meta.success == ref.meta.success
    # shadow: decisions are computed (the lighting shift is seen) but never enforced
    assert any(s["gate"] == "STOP" for s in open_run.steps)
    assert all(s["effective"] == "PROCEED" for s in open_run.steps)


def test_gated_run_stops_the_robot_at_the_shift(lighting_runs) -> None:
    open_run, gated = lighting_runs
    assert gated.first_stop_step is not None
    assert ONSET <= gated.first_stop_step <= ONSET + 4  # decisions every 4 frames
    stopped = [s["t"] for s in gated.steps if s["effective"] == "STOP"]
    assert stopped and stopped[0] == gated.first_stop_step
    acts = gated.episode.actions
    held = np.array([t for t in stopped if t < len(acts) - 1])
    assert np.all(acts[held, :3] == 0.0)  # the arm holds still while stopped
    assert np.all(acts[held, 3] == acts[held[0] - 1, 3])  # and the gripper keeps its command
    before = slice(0, ONSET)
    assert np.array_equal(acts[before], open_run.episode.actions[before])
    assert gated.outcome == "stopped"
    assert gated.to_record()["stopped_steps"] == len(stopped)


def test_in_distribution_run_is_not_stopped(monitor) -> None:
    gated = run_closed_loop(
        monitor, ClosedLoopSpec(PolicySpec(), "in_distribution", SEED), gated=True
    )
    assert gated.first_stop_step is None
    assert gated.outcome == "success"
    assert len(gated.decisions) == 13  # one per chunk: frames 0, 4, ..., 48


def test_actuation_semantics() -> None:
    ctl = GatedController(None, fps=10.0, context_length=2, slow_scale=0.25)  # type: ignore[arg-type]
    a = np.array([0.01, -0.02, 0.005, 0.7])
    assert np.allclose(ctl._actuate(a, Decision.PROCEED), a)
    assert np.allclose(ctl._actuate(a, Decision.SLOW), [0.0025, -0.005, 0.00125, 0.7])
    b = np.array([0.02, 0.02, 0.02, -1.0])
    assert np.allclose(ctl._actuate(b, Decision.STOP), [0, 0, 0, 0.7])  # gripper held
    with pytest.raises(ValueError, match="slow_scale"):
        GatedController(None, fps=10.0, context_length=2, slow_scale=1.5)  # type: ignore[arg-type]


def test_outcome_taxonomy(lighting_runs) -> None:
    ep = lighting_runs[1].episode
    meta = ep.meta

    def with_meta(**kw):
        for k, v in kw.items():
            setattr(meta, k, v)
        return ep

    saved = (meta.success, meta.failure_reason)
    try:
        assert classify_outcome(with_meta(success=True, failure_reason=None), "STOP") == "success"
        ep2 = with_meta(success=False, failure_reason="collision_with_obstacle")
        assert classify_outcome(ep2, "STOP") == "failure"  # a stop after a collision is late
        ep3 = with_meta(success=False, failure_reason="goal_missed")
        assert classify_outcome(ep3, "STOP") == "stopped"
        assert classify_outcome(ep3, "PROCEED") == "failure"
    finally:
        meta.success, meta.failure_reason = saved


def test_recordings(monitor, lighting_runs, tmp_path: Path) -> None:
    from rosbags.highlevel import AnyReader

    _, gated = lighting_runs
    mcap = write_episode_mcap(gated, tmp_path / "run")
    assert mcap.suffix == ".mcap" and (tmp_path / "run" / "metadata.yaml").is_file()
    with AnyReader([mcap.parent]) as reader:
        counts = Counter(c.topic for c, _, _ in reader.messages())
        locks = [
            reader.deserialize(raw, c.msgtype).data
            for c, _, raw in reader.messages()
            if c.topic == "/world_monitor/lock"
        ]
    assert counts["/camera/image_raw"] == 50 and counts["/world_monitor/lock"] == 50
    assert counts["/policy/action_chunk"] == 13 and counts["/world_monitor/risk"] == 13
    assert counts["/world_monitor/heatmap"] == 13 and counts["/world_monitor/shift_mask"] == 50
    assert locks == [s["effective"] == "STOP" for s in gated.steps]
    frames = strip_frames(monitor, gated)
    assert len(frames) == 50 and frames[0].shape == (2 * 64 + 8, 2 * 3 * 64 + 8, 3)
    assert tuple(frames[-1][0, 0]) == (210, 40, 40)  # red border: stopped at the end
    out = write_strip(frames, tmp_path / "strip.webp", 10.0)
    from PIL import Image

    with Image.open(out) as im:
        assert im.n_frames == 50


def test_weak_motors_escalate_from_slow_to_stop(monitor) -> None:
    """The invisible dynamics shift is seen only through the ``motion`` signal, whose first
    alarm is a SLOW; the session conditions the rollouts on the slowed commands, so the evidence
    keeps accumulating under SLOW and the gate stops the robot before it runs out of time (the
    open run fails). Measured in ``evaluate-policy`` (README): before this conditioning every
    SLOW froze the evidence and no dynamics episode was ever stopped in the loop."""
    spec = ClosedLoopSpec(PolicySpec(), "dynamics", DYNAMICS_SEED, 0)
    open_run = run_closed_loop(monitor, spec, gated=False)
    gated = run_closed_loop(monitor, spec, gated=True)
    assert open_run.outcome == "failure"
    assert gated.outcome == "stopped" and gated.first_stop_step is not None
    levels = [s["gate"] for s in gated.steps]
    first_slow = levels.index("SLOW")
    assert first_slow < gated.first_stop_step  # warned first, stopped later
    assert all(g == "SLOW" for g in levels[first_slow : gated.first_stop_step])
    assert any(d["signals"].get("motion") for d in gated.decisions if d["t"] > first_slow)
