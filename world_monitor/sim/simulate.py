"""``simulate_episode``: record one Episode by running a chunking policy in :class:`TabletopEnv`.

Envs are cached per :class:`SimConfig` within a process because compiling the model and creating
the GL context dominate the cost of short episodes; a reset fully restores the model, so reuse
does not affect the bytes produced (tested).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import Any

import numpy as np

from world_monitor.data.episode import Episode, EpisodeMeta
from world_monitor.sim.config import SimConfig
from world_monitor.sim.controller import clip_action
from world_monitor.sim.env import TabletopEnv
from world_monitor.sim.policies import DEFAULT_POLICY_NOISE

__all__ = ["StepHook", "get_env", "simulate_episode"]

#: ``hook(t, obs, new_chunk, planned_action) -> executed_action``: called once per frame, before
#: the action after frame ``t`` is executed. ``new_chunk`` is the chunk the policy planned at
#: ``t`` (``None`` between replanning steps), ``planned_action`` the action the policy wants to
#: run now. Closed-loop evaluation uses it to put a monitor and its gate between the policy and
#: the robot without a second copy of the episode loop.
StepHook = Callable[[int, dict[str, Any], np.ndarray | None, np.ndarray], np.ndarray]

_ENVS: dict[SimConfig, TabletopEnv] = {}


@atexit.register
def _close_envs() -> None:
    """Free GL contexts before interpreter teardown (OSMesa otherwise errors in __del__)."""
    while _ENVS:
        _ENVS.popitem()[1].close()


def get_env(config: SimConfig | None = None) -> TabletopEnv:
    """A process-wide env for ``config`` (created on first use)."""
    config = config or SimConfig()
    env = _ENVS.get(config)
    if env is None:
        env = _ENVS[config] = TabletopEnv(config)
    return env


def simulate_episode(
    scenario: str,
    seed: int,
    *,
    severity: float | None = None,
    onset: int | None = None,
    config: SimConfig | None = None,
    policy: str = "scripted",
    policy_noise: float | None = None,
    step_hook: StepHook | None = None,
) -> Episode:
    """Simulate one episode; ``actions[t]`` is the (clipped) action executed after frame ``t``.

    The policy is queried every ``replan_every`` steps for a chunk of ``chunk_horizon`` actions.
    The last frame's action is the policy's next intended action (never executed). With
    ``step_hook`` the hook decides what is executed (see :data:`StepHook`).
    """
    env = get_env(config)
    cfg = env.config
    T, S = cfg.episode_length, cfg.image_size
    obs = env.reset(scenario, seed, severity, onset, policy=policy, policy_noise=policy_noise)
    frames = np.empty((T, S, S, 3), dtype=np.uint8)
    actions = np.empty((T, 4), dtype=np.float32)
    masks = None if obs["shift_mask"] is None else np.zeros((T, S, S), dtype=bool)
    chunk = None
    for t in range(T):
        frames[t] = obs["frame"]
        if masks is not None:
            masks[t] = obs["shift_mask"]
        k = t % cfg.replan_every
        new_chunk = None
        if k == 0:
            chunk = new_chunk = env.policy_chunk()
        planned = clip_action(chunk[k])
        if step_hook is not None:
            planned = clip_action(step_hook(t, obs, new_chunk, planned))
        actions[t] = planned  # record exactly what the env will execute
        if t < T - 1:
            obs, _ = env.step(actions[t])
    out = env.outcome
    plan = env.shift_plan
    lay = env.layout
    extra = {
        **lay.to_json(),
        "image_size": S,
        "physics_dt": cfg.physics_dt,
        "chunk_horizon": cfg.chunk_horizon,
        "replan_every": cfg.replan_every,
        "policy_noise": DEFAULT_POLICY_NOISE if policy_noise is None else float(policy_noise),
        "final_object_xy": [round(float(v), 5) for v in env.state()["object"][:2]],
    }
    if plan is not None:
        extra["shift_params"] = plan.extra
        extra["mask_mode"] = plan.mask_mode
    meta = EpisodeMeta(
        scenario=scenario,
        seed=int(seed),
        fps=float(cfg.fps),
        success=bool(out.success),
        shift=None if plan is None else plan.name,
        severity=env.severity,
        shift_onset=env.onset,
        failure_step=out.failure_step,
        failure_reason=out.failure_reason,
        policy=policy,
        extra=extra,
    )
    stamps = np.arange(T, dtype=np.float64) / cfg.fps
    return Episode(frames=frames, actions=actions, stamps=stamps, meta=meta, shift_mask=masks)
