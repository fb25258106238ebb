"""Episode-level behaviour of the simulator: contract, determinism, onset, outcomes, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from world_monitor.data.episode import Episode, EpisodeMeta
from world_monitor.sim import (
    SimConfig,
    TabletopEnv,
    describe_scenarios,
    get_scenario,
    list_scenarios,
    save_preview,
    simulate_episode,
)

TINY = SimConfig(image_size=64, episode_length=12)  # tiny episodes keep the suite fast
SHIFTS = list_scenarios()[1:]  # every shift family


def test_registry_lists_all_families_with_descriptions():
    names = list_scenarios()
    assert names[0] == "in_distribution"
    assert set(SHIFTS) <= set(names)
    desc = describe_scenarios()
    assert all(isinstance(desc[n], str) and desc[n] for n in names)


def test_episode_contract_in_distribution():
    ep = simulate_episode("in_distribution", 3, config=TINY)
    assert isinstance(ep, Episode)
    ep.validate()
    assert ep.frames.shape == (12, 64, 64, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.shape == (12, 4) and ep.actions.dtype == np.float32
    assert np.all(np.abs(ep.actions[:, :3]) <= 0.03 + 1e-7)
    assert ep.shift_mask is None
    m = ep.meta
    assert (m.scenario, m.shift, m.severity, m.shift_onset, m.seed) == (
        "in_distribution",
        None,
        None,
        None,
        3,
    )
    assert m.fps == 10.0 and np.allclose(np.diff(ep.stamps), 0.1)
    # A 1.2 s episode cannot finish the push: the goal is missed at the last frame.
    assert not m.success and m.failure_step == 11 and m.failure_reason == "goal_missed"
    assert "object_xy" in m.extra and "goal_xy" in m.extra


@pytest.mark.parametrize("scenario", ["in_distribution", "unseen_object", "dynamics"])
def test_same_seed_same_bytes_different_seed_differs(scenario):
    a = simulate_episode(scenario, 7, config=TINY)
    b = simulate_episode(scenario, 7, config=TINY)
    assert a.equals(b)
    fresh = TabletopEnv(TINY)  # a brand-new env must agree with the cached, reused one
    obs = fresh.reset(scenario, 7)
    assert np.array_equal(obs["frame"], a.frames[0])
    for t in range(1, 4):
        obs, _ = fresh.step(a.actions[t - 1])
        assert np.array_equal(obs["frame"], a.frames[t]), f"frame {t} differs in a fresh env"
    c = simulate_episode(scenario, 8, config=TINY)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("shift", SHIFTS)
def test_frames_before_onset_equal_in_distribution(shift):
    onset = 5
    ident = simulate_episode("in_distribution", 11, config=TINY)
    ep = simulate_episode(shift, 11, onset=onset, config=TINY)
    assert ep.meta.shift == shift and ep.meta.shift_onset == onset
    assert np.array_equal(ep.frames[:onset], ident.frames[:onset])
    assert np.array_equal(ep.actions[:onset], ident.actions[:onset])
    assert not ep.shift_mask[:onset].any()
    assert ep.shift_mask[onset:].any(), "shift never visible after onset"


def test_onset_none_means_from_the_start():
    ep = simulate_episode("table_color", 2, config=TINY)
    assert ep.meta.shift_onset == 0 and ep.shift_mask[0].any()


def test_scripted_policy_succeeds_in_distribution():
    eps = [simulate_episode("in_distribution", s) for s in range(10)]
    assert sum(e.meta.success for e in eps) >= 7
    for e in eps:
        if not e.meta.success:
            assert e.meta.failure_step is not None and e.meta.failure_reason


def _failures(scenario: str, seeds: range) -> int:
    return sum(not simulate_episode(scenario, s).meta.success for s in seeds)


@pytest.mark.parametrize("shift", ["unseen_object", "dynamics"])
def test_failure_causing_shifts_fail_more_than_in_distribution(shift):
    seeds = range(100, 110)
    assert _failures(shift, seeds) >= _failures("in_distribution", seeds) + 3


def test_obstacle_collision_reports_step_and_reason():
    ep = simulate_episode("unseen_object", 0, severity=1.0)
    assert not ep.meta.success
    assert ep.meta.failure_reason == "collision_with_obstacle"
    assert 0 < ep.meta.failure_step < ep.length - 1


def test_bad_policy_fails():
    eps = [simulate_episode("in_distribution", s, policy="bad") for s in range(4)]
    assert not any(e.meta.success for e in eps)
    assert all(e.meta.policy == "bad" for e in eps)


def test_unknown_scenario_names_it_and_lists_valid():
    with pytest.raises(ValueError, match="no_such_shift") as err:
        simulate_episode("no_such_shift", 0, config=TINY)
    assert "unseen_object" in str(err.value) and "in_distribution" in str(err.value)


@pytest.mark.parametrize("severity", [-0.1, 1.5, float("nan")])
def test_severity_outside_unit_interval_rejected(severity):
    with pytest.raises(ValueError, match="severity") as err:
        simulate_episode("lighting", 0, severity=severity, config=TINY)
    assert repr(severity) in str(err.value) and "camera_pose" in str(err.value)


def test_bad_onset_and_policy_rejected():
    with pytest.raises(ValueError, match="onset"):
        simulate_episode("lighting", 0, onset=12, config=TINY)
    with pytest.raises(ValueError, match="onset"):
        simulate_episode("in_distribution", 0, onset=3, config=TINY)
    with pytest.raises(ValueError, match="nope"):
        simulate_episode("in_distribution", 0, policy="nope", config=TINY)


def test_config_validation():
    with pytest.raises(ValueError, match="replan_every"):
        SimConfig(chunk_horizon=4, replan_every=5)
    with pytest.raises(ValueError, match="image_size"):
        SimConfig(image_size=512)


def test_image_size_configurable():
    ep = simulate_episode("distractor", 1, config=SimConfig(image_size=96, episode_length=3))
    assert ep.frames.shape == (3, 96, 96, 3) and ep.shift_mask.shape == (3, 96, 96)


def test_preview_writes_png(tmp_path):
    eps = [simulate_episode(s, 0, config=TINY) for s in ("in_distribution", "distractor")]
    out = save_preview(eps, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("scenario", list_scenarios())
def test_meta_is_json_serialisable_and_round_trips(scenario):
    ep = simulate_episode(scenario, 5, config=TINY)
    text = json.dumps(ep.meta.to_dict())
    assert EpisodeMeta.from_dict(json.loads(text)) == ep.meta
    if scenario != "in_distribution":
        assert ep.meta.severity == get_scenario(scenario).default_severity
        assert ep.shift_mask is not None and ep.shift_mask.dtype == bool
