"""Issue 14 (core side): inputs outside the contract close the gate with their own reason.

Each test here failed on the code before the fix: absurd-but-finite actions opened the gate,
context frames 30 s apart opened it, a calibration that could never STOP was written, the
calibration's ``gate`` section was ignored, and ``decide(None)`` raised.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from world_monitor.models.bundle import BundleError, load_bundle, update_calibration
from world_monitor.runtime.calibrate import CalibrationError, retarget
from world_monitor.runtime.gate import GateConfig
from world_monitor.runtime.inputs import ActionRange
from world_monitor.runtime.risk import RiskCalibration, RiskConfig
from world_monitor.runtime.session import MonitorSession, SessionConfig, gate_config_for
from world_monitor.runtime.types import Decision, Reason


def _load_fakes():
    path = Path(__file__).resolve().parents[1] / "ros" / "fakes.py"
    spec = importlib.util.spec_from_file_location("world_monitor_test_fakes", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("world_monitor_test_fakes", mod)
    spec.loader.exec_module(mod)
    return mod


fakes = _load_fakes()

#: the simulator's training range: end-effector deltas +-0.03 m per step, gripper closed (-1)
TRAIN_RANGE = ActionRange(
    low=np.array([-0.03, -0.03, -0.03, -1.0]), high=np.array([0.03, 0.03, 0.03, -1.0])
)


class RangedMonitor(fakes.FakeMonitor):
    """The fake monitor plus what a bundle declares: its action range and camera period."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.action_range = TRAIN_RANGE.with_margin(np.array([0.006, 0.006, 0.006, 0.1]))
        self.frame_period_s = 0.1


def _good_chunk(horizon: int = 4) -> np.ndarray:
    c = np.zeros((horizon, 4), np.float32)
    c[:, :3] = 0.01
    c[:, 3] = -1.0
    return c


def _session(**cfg) -> MonitorSession:
    gate = GateConfig(slow_threshold=0.5, stop_threshold=0.7, reopen_after=2)
    return MonitorSession(RangedMonitor(), gate, SessionConfig(**cfg))


def _open(s: MonitorSession, n: int = 5) -> float:
    """Feed n good steps (10 Hz) until the gate is open; return the last stamp."""
    t = 0.0
    for i in range(n):
        t = 0.1 * i
        s.tick(t)
        s.on_image(fakes.frame(10), t)
        s.on_actions(_good_chunk(), t)
        if s.decision_due(t):
            s.decide(t)
    assert s.status().decision is Decision.PROCEED
    return t


# ---------------------------------------------------------------------------- item 1
@pytest.mark.parametrize(
    "make",
    [
        lambda c: np.full_like(c, 3.0),  # 100x the training range
        lambda c: np.full_like(c, 1e5),
        lambda c: (c.__setitem__((2, 1), 3.0), c)[1],  # one point in a normal chunk
        lambda c: (c.__setitem__((0, 3), 1.0), c)[1],  # gripper opened: never seen in training
    ],
    ids=["all_3", "all_1e5", "one_point", "gripper"],
)
def test_absurd_finite_actions_stop_with_action_out_of_range(make) -> None:
    s = _session()
    t = _open(s) + 0.1
    s.tick(t)
    s.on_image(fakes.frame(10), t)
    st = s.on_actions(make(_good_chunk()), t)
    assert st.decision is Decision.STOP and Reason.action_out_of_range in st.reasons
    assert "outside the bundle's action range" in st.details["action_out_of_range"]
    # the policy's rhythm continues with the same bad chunk's successor: still closed while
    # only the old chunk is buffered, and a rate-based decision keeps it closed too
    r = s.decide(t)
    assert r.status.decision is Decision.STOP
    acc = s.summary()["accounting"]["actions"]
    assert acc["rejected"] == {"action_out_of_range": 1}
    assert s.summary()["accounting_problems"] == []
    # a good chunk clears the cause; reopening still needs the confident decisions
    for k in range(1, 5):
        u = t + 0.1 * k
        s.tick(u)
        s.on_image(fakes.frame(10), u)
        s.on_actions(_good_chunk(), u)
        s.decide(u)
    assert s.status().decision is Decision.PROCEED


def test_action_range_margin_accepts_the_edge_and_rejects_beyond() -> None:
    rng = TRAIN_RANGE.with_margin(np.array([0.006, 0.006, 0.006, 0.1]))
    edge = _good_chunk()
    edge[:, :3] = 0.036
    edge[:, 3] = -0.9
    assert rng.violation(edge) is None
    edge[0, 0] = 0.0361
    assert "(0, 0)" in rng.violation(edge)


def test_shipped_bundle_declares_its_training_action_range(tmp_path: Path) -> None:
    from world_monitor.defaults import default_bundle
    from world_monitor.runtime.monitor import load_monitor

    manifest = load_bundle(default_bundle()).manifest
    ar = manifest["action_range"]
    assert ar["min"][:3] == pytest.approx([-0.03] * 3) and ar["max"][:3] == pytest.approx(
        [0.03] * 3
    )
    assert ar["min"][3] == ar["max"][3] == -1.0  # the training data never opens the gripper
    assert all(m > 0 for m in ar["margin"])
    monitor = load_monitor(default_bundle(), "torch", engines_dir=tmp_path)
    assert monitor.action_range is not None and monitor.frame_period_s == pytest.approx(0.1)
    session = MonitorSession(monitor)
    h, w = monitor.image_size
    rng = np.random.default_rng(0)
    chunk = np.zeros((monitor.horizon, monitor.action_dim), np.float32)
    chunk[:, 3] = -1.0
    for i in range(monitor.context_length):
        session.on_image(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), 0.1 * i)
    t = 0.1 * (monitor.context_length - 1)
    st = session.on_actions(np.full_like(chunk, 3.0), t)
    assert st.decision is Decision.STOP and Reason.action_out_of_range in st.reasons
    # the monitor itself refuses too (callers that bypass the session, e.g. a gate of their own)
    frames = rng.integers(0, 255, (monitor.context_length, h, w, 3), dtype=np.uint8)
    a = monitor.assess(frames, np.full_like(chunk, 3.0), t)
    assert a.risk is None and a.reasons == (Reason.action_out_of_range,)
    assert a.decision is Decision.STOP


def test_evaluation_scores_out_of_range_chunks_as_the_gate_does() -> None:
    """``evaluate`` rolls the monitor out with ``Monitor.raw`` (no session, no ``assess``), so it
    used to score absurd chunks like any other. Now such a decision is what the deployed gate
    makes of it: not rolled out, ``monitor`` 1.0 (a STOP), counted under ``refused_decisions``."""
    from types import SimpleNamespace

    from world_monitor.data.episode import Episode, EpisodeMeta
    from world_monitor.runtime.evaluate import ID_FAMILY, _score_episode, compute_metrics

    class Cal:
        info: dict = {}  # noqa: RUF012 -- no world_model references: that detector is left out

        def risk(self, scores):
            return 0.2

    class EvalMonitor:
        context_length, horizon, slow_threshold, stop_threshold, seed = 2, 4, 0.5, 0.7, 0
        rollout = backend = None
        calibration = Cal()
        risk_config = RiskConfig()
        action_range = RangedMonitor().action_range

        def __init__(self) -> None:
            self.chunks: list[np.ndarray] = []

        def reset(self) -> None:
            pass

        def raw(self, frames, chunk, context_actions, stamp):
            self.chunks.append(np.array(chunk))
            return SimpleNamespace(scores={"recon": 0.1})

    actions = np.tile(_good_chunk(1), (10, 1))
    actions[8, 0] = 3.0  # one absurd command: in the chunks planned at t = 5..8
    ep = Episode(
        frames=np.full((10, 8, 8, 3), 30, np.uint8),
        actions=actions,
        stamps=np.arange(10) / 10.0,
        meta=EpisodeMeta(scenario="synthetic", seed=0, fps=10.0, success=True),
    )
    mon = EvalMonitor()
    rec = {"id": "e0", "onset": None, "failure_step": None}
    ds = SimpleNamespace(load=lambda _id: ep)
    scored = _score_episode(
        mon, ds, ID_FAMILY, rec, stride=1, spread_seeds=[], ensemble=None, oracle=False
    )
    refused = [d for d in scored.decisions if d.refused]
    assert [d.t for d in refused] == [5, 6, 7, 8]
    assert all(d.refused == "action_out_of_range" and d.scores["monitor"] == 1.0 for d in refused)
    assert all(math.isnan(d.scores["recon"]) for d in refused)
    assert len(mon.chunks) == len(scored.decisions) - 4  # refused ones were never rolled out
    assert all(mon.action_range.violation(c) is None for c in mon.chunks)
    metrics = compute_metrics([scored], slow=0.5, stop=0.7, detectors=["monitor", "recon"])
    assert metrics[ID_FAMILY]["refused_decisions"] == {"action_out_of_range": 4}
    assert metrics[ID_FAMILY]["false_stop"]["k"] == 1
    json.dumps(scored.to_dict(), allow_nan=False)


# ---------------------------------------------------------------------------- item 2
def test_context_frames_30s_apart_stop_with_context_gap_then_refill() -> None:
    s = _session()
    s.on_image(fakes.frame(10), 0.1)
    st = s.on_image(fakes.frame(10), 30.0)
    assert st.decision is Decision.STOP and Reason.context_gap in st.reasons
    s.on_actions(_good_chunk(), 30.0)
    r = s.decide(30.0)
    assert r.status.decision is Decision.STOP and Reason.context_gap in r.status.reasons
    assert r.error == Reason.context_gap.value and r.assessment is None
    assert s.monitor.calls == []  # nothing was assessed on the broken context
    # the context refills with properly spaced frames, then the gate can reopen
    for k in range(1, 5):
        t = 30.0 + 0.1 * k
        s.tick(t)
        s.on_image(fakes.frame(10), t)
        s.on_actions(_good_chunk(), t)
        r = s.decide(t)
    assert r.status.decision is Decision.PROCEED
    assert [c[2] for c in s.monitor.calls][0] == pytest.approx(30.1)  # first full context
    assert s.summary()["accounting_problems"] == []


def test_context_gap_tolerance_is_declared_in_the_session_config() -> None:
    s = _session(context_period_tolerance=0.25)
    for t in (0.0, 0.13):  # 30% longer than the 0.1 s period: outside +-25%
        s.tick(t)
        s.on_image(fakes.frame(10), t)
    s.on_actions(_good_chunk(), 0.13)
    assert s.decide(0.13).error == Reason.context_gap.value
    loose = _session(context_period_tolerance=0.5)
    for t in (0.0, 0.13):
        loose.tick(t)
        loose.on_image(fakes.frame(10), t)
    loose.on_actions(_good_chunk(), 0.13)
    assert loose.decide(0.13).error is None
    with pytest.raises(ValueError, match="context_period_tolerance"):
        SessionConfig(context_period_tolerance=1.0)


def test_a_faster_camera_is_subsampled_to_the_bundle_period_not_refused() -> None:
    """A 30 Hz camera on a 10 Hz bundle (tolerance 50 %): a frame sooner than 0.05 s after
    the last kept one is skipped, so every second frame is a context frame (0.067 s apart,
    inside the declared tolerance); the others are counted superseded, never a context_gap."""
    s = _session()
    opened = []
    for k in range(31):  # 1 s at 30 Hz
        t = k / 30.0
        s.tick(t)
        s.on_image(fakes.frame(10), t)
        if k % 3 == 0 and k:
            s.on_actions(_good_chunk(), t)
            r = s.decide(t)
            assert r.error is None, r.error
            opened.append(r.status.decision is Decision.PROCEED)
    assert opened[-1], opened
    contexts = [c[0] for c in s.monitor.calls]
    assert len(contexts) == 10
    summary = s.summary()
    assert summary["counts"]["frames_decimated"] == 15 and summary["counts"]["context_gaps"] == 0
    assert summary["accounting_problems"] == []


# ---------------------------------------------------------------------------- item 3
def _calibration(maxima: list[float]) -> RiskCalibration:
    cal = RiskCalibration.fit_reference(
        RiskConfig(signals=("recon",)), [{"recon": 0.01 * i} for i in range(1, 40)]
    )
    cal.info["threshold_episode_max_risk"] = maxima
    return cal


def test_uncertifiable_rate_is_a_calibration_error_naming_what_is_needed() -> None:
    cal = _calibration([0.5 + 0.01 * i for i in range(15)])  # 30 episodes -> 15 threshold ones
    with pytest.raises(CalibrationError) as info:
        retarget(cal, stop_alpha=0.02, slow_alpha=0.10)
    msg = str(info.value)
    assert "\n" not in msg
    assert "49 threshold episodes (98 calibration episodes)" in msg
    assert "smallest rate these 15 can certify is 0.0625" in msg
    assert cal.stop_threshold == 1.0 and "stop_bound" not in cal.info  # nothing half-written
    ok = retarget(cal, stop_alpha=0.0625, slow_alpha=0.10)
    assert ok.stop_threshold == pytest.approx(0.64) and ok.stop_threshold < 1.0


def test_calibrate_cli_refuses_an_uncertifiable_rate_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case end to end: 30 calibration episodes and the default 2 % STOP rate used
    to write ``stop: 1.0`` and print success. Now: exit 2, one line naming what is needed and
    the smallest certifiable rate, before any rollout, and the bundle left untouched."""
    from tiny_world import make_tiny_dataset

    from world_monitor.cli import main

    data = make_tiny_dataset(tmp_path / "data", calib=30, test=1)
    bundle = _copy_shipped(tmp_path)
    before = (bundle / "calibration.json").read_bytes()
    argv = ["calibrate", str(bundle), "--data", str(data), "--false-stop-rate", "0.02"]
    rc = main([*argv, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("world-monitor calibrate: error:")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    assert "49 threshold episodes (98 calibration episodes), have 15" in lines[0]
    assert "smallest rate these 15 can certify is 0.0625" in lines[0]
    assert (bundle / "calibration.json").read_bytes() == before


def _copy_shipped(tmp_path: Path) -> Path:
    from world_monitor.defaults import default_bundle

    dst = tmp_path / "bundle"
    shutil.copytree(default_bundle(), dst)
    return dst


def _rewrite_calibration(bundle: Path, edit) -> None:
    """Hand-edit calibration.json and re-hash it in the manifest (what a tamperer would do)."""
    import hashlib

    cal = json.loads((bundle / "calibration.json").read_text())
    edit(cal)
    text = json.dumps(cal)
    (bundle / "calibration.json").write_text(text)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["hashes"]["calibration.json"] = hashlib.sha256(text.encode()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("thresholds", "needle"),
    [
        ({"slow": 0.9, "stop": 1.0}, "STOP can never trigger"),
        ({"slow": 1.0, "stop": 1.0}, "can never trigger"),
        ({"slow": 0.9, "stop": 1e999}, "finite"),
        ({"slow": 0.99, "stop": 0.5}, "inverted"),
        ({"slow": -0.1, "stop": 0.5}, "in [0, 1)"),
    ],
)
def test_thresholds_that_cannot_stop_are_refused_on_load(
    tmp_path: Path, thresholds: dict, needle: str
) -> None:
    bundle = _copy_shipped(tmp_path)
    _rewrite_calibration(bundle, lambda c: c.__setitem__("thresholds", thresholds))
    with pytest.raises(BundleError, match="thresholds") as info:
        load_bundle(bundle)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("gate", "needle"),
    [
        ({"reopen_aftr": 3}, "'reopen_aftr'"),
        ({"shadow": True}, "'shadow'"),
        ({"enabled": False}, "'enabled'"),
        ({"stop_threshold": 0.1}, "'stop_threshold'"),
        ({"image_timeout_s": -1}, "image_timeout_s"),
        ([1, 2], "mapping"),
    ],
)
def test_gate_section_unknown_or_refused_keys_fail_on_load(
    tmp_path: Path, gate: object, needle: str
) -> None:
    bundle = _copy_shipped(tmp_path)
    _rewrite_calibration(bundle, lambda c: c.__setitem__("gate", gate))
    with pytest.raises(BundleError, match="gate") as info:
        load_bundle(bundle)
    assert needle in str(info.value)


def test_gate_section_is_honoured_by_the_session(tmp_path: Path) -> None:
    """``gate_config_for`` a real Monitor (whose calibration is a RiskCalibration, not a dict)
    used to ignore the section; now its known keys reach the gate, ROS overrides still win."""
    cal = _calibration([0.5 + 0.001 * i for i in range(100)])
    retarget(cal, stop_alpha=0.02, slow_alpha=0.1)
    cal.info["gate"] = {"reopen_after": 7, "image_timeout_s": 0.25, "decision_timeout_s": 2.0}
    mon = RangedMonitor()
    mon.calibration = cal
    cfg = gate_config_for(mon)
    assert (cfg.reopen_after, cfg.image_timeout_s, cfg.decision_timeout_s) == (7, 0.25, 2.0)
    assert cfg.stop_threshold == cal.stop_threshold and cfg.slow_threshold == cal.slow_threshold
    assert gate_config_for(mon, reopen_after=2).reopen_after == 2
    # and through a bundle: written, validated, loaded back
    bundle = _copy_shipped(tmp_path)
    stored = dict(load_bundle(bundle).calibration)
    stored["gate"] = {"reopen_after": 6}
    update_calibration(bundle, stored)
    assert load_bundle(bundle).calibration["gate"] == {"reopen_after": 6}
    with pytest.raises(ValueError, match="shadow"):
        GateConfig.from_calibration(
            {"thresholds": {"slow": 0.1, "stop": 0.2}, "gate": {"shadow": 1}}
        )


# ---------------------------------------------------------------------------- item 9
@pytest.mark.parametrize("now", [None, "x", math.nan, math.inf, True, [1.0]])
def test_decide_with_a_bad_clock_never_raises_and_stops(now) -> None:
    s = _session()
    _open(s)
    r = s.decide(now)
    assert r.status.decision is Decision.STOP and r.status.lock
    assert Reason.invalid_stamp in r.status.reasons or Reason.non_finite_input in r.status.reasons
    assert r.error in (Reason.invalid_stamp.value, Reason.non_finite_input.value)
    json.dumps(s.summary(), allow_nan=False)
    s.tick(None)
    s.tick("x")
    assert s.status().decision is Decision.STOP
    assert s.decision_due(None) in (True, False)


def _bag(tmp_path: Path) -> Path:
    from world_monitor.data.bag import export_episode_bag
    from world_monitor.data.episode import Episode, EpisodeMeta

    n = 6
    frames = np.full((n, 64, 64, 3), 40, np.uint8)
    actions = np.zeros((n, 4), np.float32)
    actions[:, 3] = -1.0
    meta = EpisodeMeta(scenario="synthetic", seed=0, fps=10.0, success=True)
    ep = Episode(frames=frames, actions=actions, stamps=np.arange(n) / 10.0, meta=meta)
    return export_episode_bag(ep, tmp_path / "bag", horizon=8)


@pytest.mark.parametrize(
    ("backend", "needle"),
    [
        ("bogus", "unknown backend 'bogus'"),
        ("tensorrt", "tensorrt: module tensorrt not installed"),
        ("onnxruntime", "parity failed"),
    ],
)
def test_replay_backend_errors_are_one_line_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    backend: str,
    needle: str,
) -> None:
    from world_monitor.cli import main
    from world_monitor.runtime.backends.base import BackendUnavailable
    from world_monitor.runtime.backends.ort_backend import OrtBackend

    if backend == "tensorrt" and importlib.util.find_spec("tensorrt") is not None:
        needle = "tensorrt:"  # installed: it fails for another named reason (no GPU, ...)

    def bad_parity(self, *a, **k):
        raise BackendUnavailable("parity failed: encoder.latent max|diff| 1.0e+00 > atol 1e-4")

    monkeypatch.setattr(OrtBackend, "check_parity", bad_parity)
    monkeypatch.chdir(tmp_path)  # the engine cache ("engines/") goes here
    bag = _bag(tmp_path)
    rc = main(["replay", str(bag), "--backend", backend, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("world-monitor replay: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert err.rstrip().endswith(lines[0])  # nothing after it: the message is one line
