"""Every shift changes the rendered frames only where its ground-truth mask says.

Method: run the shifted episode step by step, and re-render each recorded state (qpos) in a
second, shift-free env (in-distribution, same seed) — an independent counterfactual render.

- Local shifts (unseen_object, distractor, table_color, ee_appearance): pixels outside the mask
  are bit-identical to the shift-free render, and every masked pixel differs.
- Global shifts (lighting, camera_pose): the mask is *defined* as the pixels whose colour moved by
  more than ``SimConfig.mask_threshold``, so outside it the difference is bounded by that
  threshold rather than zero.
- dynamics changes no appearance: the frame equals the shift-free render everywhere, and the mask
  is the arm + puck segmentation (checked to be non-empty and to cover the puck's pixels).
"""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.sim import SimConfig, TabletopEnv
from world_monitor.sim.simulate import get_env

TINY = SimConfig(image_size=64, episode_length=12)  # tiny episodes keep the suite fast


def _rollout_with_counterfactual(shift: str, nominal_env: TabletopEnv, seed: int = 4):
    env = get_env(TINY)
    obs = env.reset(shift, seed)
    pairs = []
    for t in range(TINY.episode_length):
        qpos = env.data.qpos.copy()
        pairs.append((obs["frame"], obs["shift_mask"], qpos))
        if t < TINY.episode_length - 1:
            chunk = env.policy_chunk()
            obs, _ = env.step(chunk[0])
    nominal_env.reset("in_distribution", seed)
    return [(f, m, nominal_env.render_state(q)) for f, m, q in pairs]


@pytest.mark.parametrize("shift", ["unseen_object", "distractor", "table_color", "ee_appearance"])
def test_local_shift_changes_pixels_only_inside_mask(shift, nominal_env):
    seen = 0
    for frame, mask, nominal in _rollout_with_counterfactual(shift, nominal_env):
        changed = (frame != nominal).any(axis=-1)
        assert np.array_equal(changed, mask)
        seen += int(mask.sum())
    assert seen > 0, f"{shift} never visible"


@pytest.mark.parametrize("shift", ["lighting", "camera_pose"])
def test_global_shift_mask_is_thresholded_change(shift, nominal_env):
    thr = TINY.mask_threshold
    for frame, mask, nominal in _rollout_with_counterfactual(shift, nominal_env):
        diff = np.abs(frame.astype(int) - nominal.astype(int)).max(axis=-1)
        assert (diff[~mask] <= thr).all()
        assert (diff[mask] > thr).all()
        assert mask.mean() > 0.05, "a global shift at default severity should be widely visible"


def test_dynamics_mask_is_affected_bodies_and_appearance_unchanged(nominal_env):
    env = get_env(TINY)
    for frame, mask, nominal in _rollout_with_counterfactual("dynamics", nominal_env):
        assert np.array_equal(frame, nominal)
        assert mask.any()
        puck_red = (frame[..., 0] > 150) & (frame[..., 1] < 80) & (frame[..., 2] < 80)
        assert mask[puck_red].all(), "puck pixels must be inside the dynamics mask"
        assert not mask.all()
    assert env.shift_plan.mask_mode == "segmentation"
