"""Stepping tabletop environment: the single source of truth for physics, shifts and outcomes.

``simulate_episode`` is a thin loop over this env, and the closed-loop evaluation drives the same
env with a learned policy, so recorded and closed-loop episodes cannot drift apart.

Determinism: one compiled model per env; every reset restores all patchable model fields from a
snapshot and creates a fresh ``MjData`` (no warm-start carry-over), and all randomness comes from
``np.random.default_rng([seed, stream])`` with separate streams for layout (0), shift (1) and
policy (2), so a shifted episode shares its layout with the in-distribution episode of that seed.

Timing: frame ``t`` shows the state at time ``t / fps``; ``step(action)`` applies the action for
one control period (``substeps`` physics steps) and returns frame ``t + 1``. A shift with onset
``k`` is switched on just before frame ``k`` is rendered, so it affects the physics of the
transition ``k -> k + 1`` onward.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from world_monitor.sim import config as C
from world_monitor.sim.controller import ArmController, clip_action
from world_monitor.sim.layout import Layout, sample_layout
from world_monitor.sim.policies import Policy, make_policy
from world_monitor.sim.render import SceneRenderer
from world_monitor.sim.scenarios import (
    KINEMATIC_FIELDS,
    PATCHABLE_FIELDS,
    Patch,
    ShiftPlan,
    get_scenario,
    list_scenarios,
    resolve_severity,
)
from world_monitor.sim.scene import PARK_POS, build_model

__all__ = ["Outcome", "TabletopEnv"]

log = logging.getLogger(__name__)

#: Puck counts as off the table below this height (its centre rests at +PUCK_HALF_HEIGHT).
_OFF_TABLE_Z = -0.02
#: Patched fields that invalidate mj_setConst's derived constants.
_INERTIAL_FIELDS = frozenset({"body_mass", "body_inertia"})


@dataclass
class Outcome:
    """Task outcome so far; ``success`` is only final once the last frame is reached.

    The first failure wins: a puck that reaches the goal after hitting the obstacle is still a
    failure (``collision_with_obstacle``), because a safety monitor must flag the collision.
    """

    success: bool = False
    failure_step: int | None = None
    failure_reason: str | None = None


class TabletopEnv:
    """Push-the-puck-to-the-goal env with an articulated arm and switchable shifts.

    ``reset(...) -> obs`` and ``step(action) -> (obs, done)``; ``obs`` is a dict with ``frame``
    (uint8[S,S,3]), ``shift_mask`` (bool[S,S] or None for in-distribution), ``state`` (privileged
    state dict for scripted policies) and ``t``. ``policy_chunk()`` returns the chunk the policy
    chosen at reset would emit now.
    """

    def __init__(self, config: C.SimConfig | None = None) -> None:
        self.config = config or C.SimConfig()
        self.model, self.ids = build_model(self.config.physics_dt)
        self._pristine = {f: getattr(self.model, f).copy() for f in PATCHABLE_FIELDS}
        self._controller = ArmController(self.model, self.ids)
        self._renderer = SceneRenderer(self.model, self.config.image_size, self.ids.camera)
        home = mujoco.MjData(self.model)
        self._home_qpos = self._controller.home_qpos(home.qpos)
        self._home_joints = self._home_qpos[self.ids.arm_qpos].copy()
        self.data: mujoco.MjData = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # mj_setConst overwrites the data it is given
        self._puck_dof = int(self.model.jnt_dofadr[self.model.body_jntadr[self.ids.puck_body]])
        self._plan: ShiftPlan | None = None
        self._nominal: list[Patch] = []
        self._active = False
        self.t = 0
        self.onset: int | None = None
        self.layout: Layout | None = None
        self.scenario = ""
        self.seed = 0
        self.severity: float | None = None
        self.policy: Policy | None = None
        self.outcome = Outcome()

    # ------------------------------------------------------------------ episode control
    def reset(
        self,
        scenario: str = "in_distribution",
        seed: int = 0,
        severity: float | None = None,
        onset: int | None = None,
        *,
        policy: str = "scripted",
        policy_noise: float | None = None,
    ) -> dict[str, Any]:
        """Start an episode; raises ValueError for unknown scenario/policy or bad severity/onset."""
        scen = get_scenario(scenario)
        sev = resolve_severity(scen, severity)
        T = self.config.episode_length
        if onset is not None and scen.is_shift and not 0 <= int(onset) < T:
            raise ValueError(f"onset must be in [0, {T}) or None, got {onset!r}")
        if onset is not None and not scen.is_shift:
            raise ValueError(f"scenario {scenario!r} has no shift, so onset must be None")
        self.policy = make_policy(policy, self.config.chunk_horizon, policy_noise)

        m, ids = self.model, self.ids
        for name, value in self._pristine.items():
            getattr(m, name)[...] = value
        # Derived constants (e.g. body_invweight0, used to scale contact softness) must follow
        # mass patches; recomputing them on every reset keeps fresh and reused envs identical.
        mujoco.mj_setConst(m, self._scratch)
        self.scenario, self.seed, self.severity = scenario, int(seed), sev
        self.layout = lay = sample_layout(np.random.default_rng([int(seed), 0]))
        m.geom_rgba[ids.puck_geom] = lay.puck_rgba
        m.geom_rgba[ids.goal_geom] = lay.goal_rgba
        m.geom_rgba[ids.table_geom] = lay.table_rgba
        m.body_pos[ids.goal_body, :2] = lay.goal_xy
        shift_rng = np.random.default_rng([int(seed), 1])
        self._plan = scen.build(m, ids, lay, sev, shift_rng) if scen.build is not None else None
        self.onset = None if self._plan is None else int(onset or 0)
        self.policy.reset(np.random.default_rng([int(seed), 2]))

        self.data = d = mujoco.MjData(m)
        d.qpos[:] = self._home_qpos
        q = ids.puck_qpos
        d.qpos[q : q + 3] = [lay.object_xy[0], lay.object_xy[1], C.PUCK_HALF_HEIGHT]
        d.qpos[q + 3 : q + 7] = [
            np.cos(lay.object_yaw / 2),
            0,
            0,
            np.sin(lay.object_yaw / 2),
        ]
        d.ctrl[ids.arm_act] = self._home_joints
        d.ctrl[ids.finger_act] = ArmController.finger_target(-1.0)
        d.mocap_pos[:] = PARK_POS
        self._active = False
        self._nominal = []
        self.t = 0
        self.outcome = Outcome()
        self._maybe_activate()
        mujoco.mj_forward(m, d)
        self._check_outcome(contact_seen=False)
        return self._observe()

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], bool]:
        """Apply one action for one control period; returns (obs of frame t+1, done)."""
        T = self.config.episode_length
        if self.t >= T - 1:
            raise RuntimeError(f"episode is over (t={self.t}, T={T}); call reset()")
        a = clip_action(action)
        m, d, ids = self.model, self.data, self.ids
        ee = d.site_xpos[ids.ee_site].copy()
        (x0, x1), (y0, y1), (z0, z1) = C.EE_BOUNDS
        target = np.clip(ee + a[:3], [x0, y0, z0], [x1, y1, z1])
        d.ctrl[ids.arm_act] = self._controller.solve(d.qpos, target)
        d.ctrl[ids.finger_act] = ArmController.finger_target(a[3])
        contact = False
        for _ in range(self.config.substeps):
            mujoco.mj_step(m, d)
            if self._active and self._plan is not None and self._plan.show_shift_group:
                contact = contact or self._obstacle_contact()
        self.t += 1
        if d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0:
            log.warning("physics went unstable (MuJoCo reset the state) at frame %d", self.t)
            d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number = 0
        self._maybe_activate()
        mujoco.mj_forward(m, d)
        self._check_outcome(contact_seen=contact)
        return self._observe(), self.t >= T - 1

    def policy_chunk(self) -> np.ndarray:
        """The reset-time policy's chunk float32[H, 4] for the current state."""
        if self.policy is None:
            raise RuntimeError("call reset() before policy_chunk()")
        return self.policy.plan(self.state())

    # ------------------------------------------------------------------ state and outcome
    def state(self) -> dict[str, Any]:
        """Privileged state (copies): EE/puck/goal positions, joints, gripper opening, t."""
        d, ids = self.data, self.ids
        q = ids.puck_qpos
        return {
            "t": self.t,
            "ee": d.site_xpos[ids.ee_site].copy(),
            "object": d.qpos[q : q + 3].copy(),
            "object_quat": d.qpos[q + 3 : q + 7].copy(),
            "object_vel": d.qvel[self._puck_dof : self._puck_dof + 3].copy(),
            "goal": self.layout.goal_xy.copy() if self.layout is not None else np.zeros(2),
            "joints": d.qpos[ids.arm_qpos].copy(),
            "gripper": float(d.qpos[ids.finger_qpos].mean() / C.FINGER_OPEN),
        }

    def _obstacle_contact(self) -> bool:
        d, ids = self.data, self.ids
        g1, g2 = d.contact.geom1[: d.ncon], d.contact.geom2[: d.ncon]
        return bool(np.any((g1 == ids.obstacle_geom) | (g2 == ids.obstacle_geom)))

    def _check_outcome(self, contact_seen: bool) -> None:
        o, T = self.outcome, self.config.episode_length
        pos = self.data.qpos[self.ids.puck_qpos : self.ids.puck_qpos + 3]
        if o.failure_step is None:
            off = (
                pos[2] < _OFF_TABLE_Z
                or not C.TABLE_X[0] < pos[0] < C.TABLE_X[1]
                or not C.TABLE_Y[0] < pos[1] < C.TABLE_Y[1]
            )
            if off:
                o.failure_step, o.failure_reason = self.t, "object_off_table"
            elif contact_seen:
                o.failure_step, o.failure_reason = self.t, "collision_with_obstacle"
        if self.t == T - 1 and o.failure_step is None:
            in_goal = float(np.linalg.norm(pos[:2] - self.layout.goal_xy)) < C.GOAL_RADIUS
            if in_goal:
                o.success = True
            else:
                o.failure_step, o.failure_reason = T - 1, "goal_missed"

    # ------------------------------------------------------------------ shifts and rendering
    def _maybe_activate(self) -> None:
        plan = self._plan
        if plan is None or self.onset is None:
            return
        if not self._active and self.t >= self.onset:
            self._nominal = [
                Patch(p.field, p.index, getattr(self.model, p.field)[p.index].copy())
                for p in plan.patches
            ]
            self._apply(plan.patches)
            if any(p.field in _INERTIAL_FIELDS for p in plan.patches):
                mujoco.mj_setConst(self.model, self._scratch)
            self._active = True
            log.debug(
                "shift %s (severity %s) active from frame %d",
                plan.name,
                plan.severity,
                self.t,
            )
        if self._active:
            for mocap, pos_fn in plan.mocap.items():
                self.data.mocap_pos[mocap] = pos_fn(self.t)

    def _world_poses(self) -> None:
        """Recompute world poses after patching body/camera/light fields (no dynamics)."""
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)  # cameras and lights are not in mj_kinematics

    def _apply(self, patches: list[Patch]) -> bool:
        """Write patches into the model; True when world poses must be recomputed."""
        kin = False
        for p in patches:
            getattr(self.model, p.field)[p.index] = p.value
            kin = kin or p.field in KINEMATIC_FIELDS
        return kin

    def _observe(self) -> dict[str, Any]:
        plan, d, r = self._plan, self.data, self._renderer
        mask = None
        if plan is None or not self._active:
            frame = r.rgb(d, show_shift_group=False)
            if plan is not None:
                mask = np.zeros(frame.shape[:2], dtype=bool)
        else:
            frame = r.rgb(d, show_shift_group=plan.show_shift_group)
            if plan.mask_mode == "segmentation":
                mask = np.isin(r.geom_ids(d, plan.show_shift_group), plan.mask_geoms)
            else:
                if self._apply(self._nominal):
                    self._world_poses()
                nominal = r.rgb(d, show_shift_group=False)
                if self._apply(plan.patches):
                    self._world_poses()
                diff = np.abs(frame.astype(np.int16) - nominal.astype(np.int16)).max(axis=-1)
                thr = self.config.mask_threshold if plan.mask_mode == "threshold" else 0
                mask = diff > thr
        return {"t": self.t, "frame": frame, "shift_mask": mask, "state": self.state()}

    def render_state(self, qpos: np.ndarray, mocap_pos: np.ndarray | None = None) -> np.ndarray:
        """Render an arbitrary kinematic state in this env's current scene (shift as it is now).

        Used for counterfactual renders, e.g. the same state with and without a shift in tests.
        Overwrites the env's state: only call between episodes or on a scratch env.
        """
        self.data.qpos[:] = qpos
        if mocap_pos is not None:
            self.data.mocap_pos[:] = mocap_pos
        mujoco.mj_forward(self.model, self.data)
        show = self._plan is not None and self._active and self._plan.show_shift_group
        return self._renderer.rgb(self.data, show_shift_group=show)

    @property
    def shift_plan(self) -> ShiftPlan | None:
        return self._plan

    @staticmethod
    def scenarios() -> list[str]:
        return list_scenarios()

    def close(self) -> None:
        self._renderer.close()
