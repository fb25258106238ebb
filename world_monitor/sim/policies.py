"""Policies that emit action chunks ``float32[H, 4]`` from privileged state.

Like a real action-chunking policy (ACT, diffusion policy, pi0), a policy is queried every
``replan_every`` control steps and returns the next H actions; only the first ``replan_every``
are executed. The scripted push expert plans its chunk by rolling a tiny kinematic model of the
push forward (perfect EE tracking, the puck carried along once in contact), so the tail of each
chunk is a plausible *intended* future — what a world model should judge.

State dict keys used: ``ee`` (3,), ``object`` (3,), ``goal`` (2,), ``t`` (int).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from world_monitor.sim import config as C

__all__ = [
    "DEFAULT_POLICY_NOISE",
    "BadPolicy",
    "Policy",
    "RandomPolicy",
    "ScriptedPushPolicy",
    "list_policies",
    "make_policy",
]

#: Default action noise: Gaussian std as a fraction of MAX_EE_DELTA, added to dx, dy, dz.
DEFAULT_POLICY_NOISE = 0.15

Z_PUSH = 0.012  # finger tips 1.2 cm above the table: below the puck's top (4.4 cm)
Z_TRAVEL = 0.10  # clear of the puck when repositioning
CONTACT = C.PUCK_RADIUS + 0.02  # EE-centre to puck-centre distance at contact
PRE_PUSH = CONTACT + 0.03
PUSH_SPEED = 0.02
GRIP_CLOSED = -1.0


class Policy(Protocol):
    """Anything with ``reset(rng)`` and ``plan(state) -> float32[H, 4]`` can drive the env."""

    name: str

    def reset(self, rng: np.random.Generator) -> None: ...

    def plan(self, state: dict[str, Any]) -> np.ndarray: ...


def _push_delta(ee: np.ndarray, obj: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, bool]:
    """One step of the push expert: desired EE delta (3,) and whether it is pushing."""
    to_goal = goal - obj
    dist = float(np.linalg.norm(to_goal))
    if dist < 0.012:  # done: back off upward so the puck is left where it is
        return np.array([0.0, 0.0, C.MAX_EE_DELTA]), False
    d = to_goal / dist
    rel = ee[:2] - obj
    along = float(rel @ d)
    lat = rel - along * d
    low = ee[2] < 0.05
    if low and along < -0.6 * CONTACT and float(np.linalg.norm(lat)) < 0.02:
        speed = float(np.clip(dist, 0.006, PUSH_SPEED))
        target_xy = ee[:2] + d * speed - 0.6 * lat
        target = np.array([*target_xy, Z_PUSH])
        return target - ee, True
    behind = obj - d * PRE_PUSH
    near_puck = float(np.linalg.norm(rel)) < CONTACT + 0.035
    if low and near_puck:  # misaligned next to the puck: lift before moving sideways
        return np.array([0.0, 0.0, C.MAX_EE_DELTA]), False
    if float(np.linalg.norm(ee[:2] - behind)) > 0.012:
        clear = ee[2] > 0.06 or not _segment_hits(ee[:2], behind, obj)
        target_xy = behind if clear else ee[:2]
        return np.array([*target_xy, Z_TRAVEL]) - ee, False
    return np.array([*behind, Z_PUSH]) - ee, False


def _segment_hits(a: np.ndarray, b: np.ndarray, centre: np.ndarray) -> bool:
    """Does the straight EE path a->b pass within contact distance of the puck?"""
    ab = b - a
    t = float(np.clip((centre - a) @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(a + t * ab - centre)) < CONTACT + 0.01


class ScriptedPushPolicy:
    """Expert: reach behind the puck, descend, push it to the goal; re-plans from state."""

    name = "scripted"

    def __init__(self, horizon: int = 8, noise: float = DEFAULT_POLICY_NOISE) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.horizon = horizon
        self.noise = float(noise)
        self._rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def _goal(self, state: dict[str, Any]) -> np.ndarray:
        return np.asarray(state["goal"], float)[:2]

    def plan(self, state: dict[str, Any]) -> np.ndarray:
        ee = np.asarray(state["ee"], float).copy()
        obj = np.asarray(state["object"], float)[:2].copy()
        goal = self._goal(state)
        chunk = np.zeros((self.horizon, C.ACTION_DIM), dtype=np.float64)
        for h in range(self.horizon):
            delta, pushing = _push_delta(ee, obj, goal)
            delta = np.clip(delta, -C.MAX_EE_DELTA, C.MAX_EE_DELTA)
            chunk[h, :3], chunk[h, 3] = delta, GRIP_CLOSED
            ee = ee + delta
            if pushing:  # carry the puck along the push direction once in contact
                d = (goal - obj) / max(float(np.linalg.norm(goal - obj)), 1e-9)
                obj = obj + d * max(0.0, float((ee[:2] - obj) @ d) + CONTACT)
        if self.noise > 0:
            chunk[:, :3] += self._rng.normal(0.0, self.noise * C.MAX_EE_DELTA, (self.horizon, 3))
        chunk[:, :3] = np.clip(chunk[:, :3], -C.MAX_EE_DELTA, C.MAX_EE_DELTA)
        return chunk.astype(np.float32)


class BadPolicy(ScriptedPushPolicy):
    """A confidently wrong policy: pushes the puck competently, but toward the wrong place.

    The wrong target is the goal mirrored through the puck and pushed 0.25 m further, i.e. away
    from the goal and usually over a table edge: for policy evaluation it should fail (puck off
    the table or goal missed) while its actions look as smooth as the expert's.
    """

    name = "bad"

    def __init__(self, horizon: int = 8, noise: float = DEFAULT_POLICY_NOISE) -> None:
        super().__init__(horizon, noise)
        self._wrong: np.ndarray | None = None

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self._wrong = None

    def _goal(self, state: dict[str, Any]) -> np.ndarray:
        if self._wrong is None:
            obj = np.asarray(state["object"], float)[:2]
            away = obj - np.asarray(state["goal"], float)[:2]
            away /= max(float(np.linalg.norm(away)), 1e-9)
            self._wrong = obj + away * 0.45
        return self._wrong


class RandomPolicy:
    """Random pushes: sweeps low over the table between random waypoints, often through the puck.

    Half of the waypoints are drawn near the puck so it really gets shoved around (sometimes off
    the table); the gripper opens and closes at random. ``noise`` scales the per-step jitter.
    """

    name = "random"

    def __init__(self, horizon: int = 8, noise: float = 0.3) -> None:
        self.horizon = horizon
        self.noise = float(noise)
        self._rng = np.random.default_rng(0)
        self._waypoint: np.ndarray | None = None
        self._grip = -1.0

    def reset(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._waypoint = None
        self._grip = -1.0

    def _new_waypoint(self, obj: np.ndarray) -> np.ndarray:
        (x0, x1), (y0, y1), _ = C.EE_BOUNDS
        if self._rng.random() < 0.5:
            xy = obj[:2] + self._rng.uniform(-0.12, 0.12, size=2)
        else:
            xy = np.array([self._rng.uniform(x0, x1), self._rng.uniform(y0, y1)])
        if self._rng.random() < 0.3:
            self._grip = -self._grip
        return np.array([*np.clip(xy, [x0, y0], [x1, y1]), self._rng.uniform(Z_PUSH, 0.06)])

    def plan(self, state: dict[str, Any]) -> np.ndarray:
        ee = np.asarray(state["ee"], float).copy()
        obj = np.asarray(state["object"], float)
        chunk = np.zeros((self.horizon, C.ACTION_DIM), dtype=np.float64)
        for h in range(self.horizon):
            if self._waypoint is None or np.linalg.norm(self._waypoint - ee) < 0.02:
                self._waypoint = self._new_waypoint(obj)
            delta = np.clip(self._waypoint - ee, -C.MAX_EE_DELTA, C.MAX_EE_DELTA)
            delta += self._rng.normal(0.0, self.noise * C.MAX_EE_DELTA, 3)
            chunk[h, :3] = np.clip(delta, -C.MAX_EE_DELTA, C.MAX_EE_DELTA)
            chunk[h, 3] = self._grip
            ee = ee + chunk[h, :3]
        return chunk.astype(np.float32)


_POLICIES = {"scripted": ScriptedPushPolicy, "bad": BadPolicy, "random": RandomPolicy}


def list_policies() -> list[str]:
    return list(_POLICIES)


def make_policy(name: str, horizon: int, noise: float | None = None) -> Policy:
    """Build a registered policy; ValueError naming the bad name and the valid ones."""
    if name not in _POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid policies: {', '.join(_POLICIES)}")
    cls = _POLICIES[name]
    if noise is None:
        return cls(horizon)
    return cls(horizon, noise)
