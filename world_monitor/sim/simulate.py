"""``simulate_episode``: record one Episode by running a chunking policy in :class:`TabletopEnv`.

Envs are cached per :class:`SimConfig` within a process because compiling the model and creating
the GL context dominate the cost of short episodes; a reset fully restores the model, so reuse
does not affect the bytes produced (tested).
"""

from __future__ import annotations

import atexit

import numpy as np

from world_monitor.data.episode import Episode, EpisodeMeta
from world_monitor.sim.config import SimConfig
from world_monitor.sim.controller import clip_action
from world_monitor.sim.env import TabletopEnv
from world_monitor.sim.policies import DEFAULT_POLICY_NOISE

__all__ = ["get_env", "simulate_episode"]

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
) -> Episode:
    """Simulate one episode; ``actions[t]`` is the (clipped) action executed after frame ``t``.

    The policy is queried every ``replan_every`` steps for a chunk of ``chunk_horizon`` actions.
    The last frame's action is the policy's next intended action (never executed).
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
        if k == 0:
            chunk = env.policy_chunk()
        actions[t] = clip_action(chunk[k])  # record exactly what the env will execute
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
