"""In-distribution randomisation: where the puck and goal are and small colour jitter.

Kept apart from the shift registry because every scenario (shifted or not) draws the same
layout from the same seed: this is what makes a shifted episode identical to its
in-distribution twin before the shift's onset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from world_monitor.sim import config as C
from world_monitor.sim.scene import COLORS

__all__ = ["Layout", "sample_layout"]

#: Colour jitter: a shared brightness offset plus a smaller per-channel (hue) offset.
_BRIGHTNESS_JITTER = 0.04
_COLOR_JITTER = 0.015
_PRE_PUSH_CLEARANCE = 0.09


@dataclass(frozen=True)
class Layout:
    """Initial puck position, goal position and jittered colours of one episode."""

    object_xy: np.ndarray
    goal_xy: np.ndarray
    object_yaw: float
    puck_rgba: np.ndarray
    goal_rgba: np.ndarray
    table_rgba: np.ndarray

    def to_json(self) -> dict[str, list[float] | float]:
        return {
            "object_xy": [round(float(v), 5) for v in self.object_xy],
            "goal_xy": [round(float(v), 5) for v in self.goal_xy],
            "object_yaw": round(self.object_yaw, 5),
        }


def _reachable(xy: np.ndarray) -> bool:
    """Inside the EE box and at a comfortable radius from the arm base (not folded, not stretched)."""
    r = float(np.hypot(xy[0] - C.ARM_BASE[0], xy[1] - C.ARM_BASE[1]))
    (x0, x1), (y0, y1), _ = C.EE_BOUNDS
    return 0.20 <= r <= 0.64 and x0 < xy[0] < x1 and y0 < xy[1] < y1


def sample_layout(rng: np.random.Generator) -> Layout:
    """Rejection-sample a pushable layout: distance in PUSH_DISTANCE, pre-push pose reachable."""
    (ox0, ox1), (oy0, oy1) = C.OBJECT_REGION
    (gx0, gx1), (gy0, gy1) = C.GOAL_REGION
    for _ in range(1000):
        obj = np.array([rng.uniform(ox0, ox1), rng.uniform(oy0, oy1)])
        goal = np.array([rng.uniform(gx0, gx1), rng.uniform(gy0, gy1)])
        dist = float(np.linalg.norm(goal - obj))
        if not C.PUSH_DISTANCE[0] <= dist <= C.PUSH_DISTANCE[1]:
            continue
        pre = obj - (goal - obj) / dist * _PRE_PUSH_CLEARANCE
        if _reachable(pre) and _reachable(goal) and _reachable(obj):
            break
    else:  # pragma: no cover - the regions above always admit layouts
        raise RuntimeError("could not sample a reachable layout")
    jitter = rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, size=(3, 3))
    jitter += rng.uniform(-_BRIGHTNESS_JITTER, _BRIGHTNESS_JITTER, size=(3, 1))

    def rgba(name: str, j: np.ndarray) -> np.ndarray:
        base = np.array(COLORS[name], dtype=np.float64)
        base[:3] = np.clip(base[:3] + j, 0.0, 1.0)
        return base

    return Layout(
        object_xy=obj,
        goal_xy=goal,
        object_yaw=float(rng.uniform(-np.pi, np.pi)),
        puck_rgba=rgba("puck", jitter[0]),
        goal_rgba=rgba("goal", jitter[1]),
        table_rgba=rgba("table", jitter[2]),
    )
