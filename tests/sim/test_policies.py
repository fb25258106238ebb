"""Policy interface: chunk shape/dtype, action limits, determinism of noise, controller clipping."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.sim import MAX_EE_DELTA, SimConfig, list_policies, make_policy
from world_monitor.sim.controller import clip_action
from world_monitor.sim.simulate import get_env

TINY = SimConfig(image_size=64, episode_length=12)  # tiny episodes keep the suite fast


@pytest.mark.parametrize("name", list_policies())
def test_chunks_have_shape_and_limits(name):
    env = get_env(TINY)
    env.reset("in_distribution", 0, policy=name)
    chunk = env.policy_chunk()
    assert chunk.shape == (TINY.chunk_horizon, 4) and chunk.dtype == np.float32
    assert np.all(np.abs(chunk[:, :3]) <= MAX_EE_DELTA + 1e-7)
    assert np.all(np.abs(chunk[:, 3]) <= 1.0)


def test_noise_is_seeded_and_zero_noise_is_deterministic_plan():
    state = {"ee": np.array([0.0, -0.28, 0.16]), "object": np.array([0.1, -0.1, 0.02])}
    state["goal"] = np.array([0.0, 0.1])
    a, b, c = (make_policy("scripted", 8, 0.2) for _ in range(3))
    a.reset(np.random.default_rng(1))
    b.reset(np.random.default_rng(1))
    c.reset(np.random.default_rng(2))
    assert np.array_equal(a.plan(state), b.plan(state))
    assert not np.array_equal(a.plan(state), c.plan(state))
    quiet = make_policy("scripted", 8, 0.0)
    quiet.reset(np.random.default_rng(5))
    first = quiet.plan(state)
    # Reaching phase: move toward the pre-push point behind the puck, gripper closed.
    assert np.all(first[:, 3] == -1.0)
    assert np.linalg.norm(first[0, :3]) > 0.01


def test_clip_action_limits_and_rejects_bad_input():
    out = clip_action(np.array([1.0, -1.0, 0.01, 5.0]))
    assert np.allclose(out, [MAX_EE_DELTA, -MAX_EE_DELTA, 0.01, 1.0])
    with pytest.raises(ValueError, match="shape"):
        clip_action(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        clip_action(np.array([np.nan, 0, 0, 0]))


def test_env_step_moves_end_effector_in_commanded_direction():
    env = get_env(TINY)
    obs = env.reset("in_distribution", 0)
    start = obs["state"]["ee"]
    for _ in range(3):
        obs, done = env.step(np.array([0.03, 0.0, 0.0, -1.0]))
    moved = obs["state"]["ee"] - start
    assert moved[0] > 0.06 and abs(moved[1]) < 0.02 and not done
