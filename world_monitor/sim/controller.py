"""End-effector delta actions -> joint position targets (damped-least-squares IK).

Why DLS on the wrist centre: the wrist pitch is slaved to keep the tool vertical (wrist =
-(shoulder + elbow)), so the finger tips sit a fixed :data:`TOOL_LENGTH` below the wrist centre.
IK then only has to place one point with three joints (yaw, shoulder, elbow): a square,
well-conditioned problem away from full stretch, and DLS (``mj_jacSite``) degrades gracefully
near it instead of blowing up. IK runs on a private scratch ``MjData`` so the simulation state is
never touched; it starts from the current joint angles, keeping the elbow-up branch.
"""

from __future__ import annotations

import mujoco
import numpy as np

from world_monitor.sim import config as C
from world_monitor.sim.scene import SceneIds

__all__ = ["ArmController", "clip_action"]

_DAMPING = 0.03
_ITERS = 12


def clip_action(action: np.ndarray) -> np.ndarray:
    """Clip ``[dx, dy, dz, grip]`` to ±MAX_EE_DELTA per axis and the gripper to [-1, 1]."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (C.ACTION_DIM,):
        raise ValueError(f"action must have shape [{C.ACTION_DIM}], got {list(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"action contains non-finite values: {a.tolist()}")
    out = a.copy()
    out[:3] = np.clip(out[:3], -C.MAX_EE_DELTA, C.MAX_EE_DELTA)
    out[3] = np.clip(out[3], -1.0, 1.0)
    return out


class ArmController:
    """Turns an end-effector target into actuator set-points for the position servos."""

    def __init__(self, model: mujoco.MjModel, ids: SceneIds) -> None:
        self._model = model
        self._ids = ids
        self._scratch = mujoco.MjData(model)
        self._jac = np.zeros((3, model.nv))
        lo = model.jnt_range[[model.dof_jntid[d] for d in ids.arm_dof[:3]], 0]
        hi = model.jnt_range[[model.dof_jntid[d] for d in ids.arm_dof[:3]], 1]
        self._lo, self._hi = lo, hi

    def solve(self, qpos: np.ndarray, ee_target: np.ndarray) -> np.ndarray:
        """Joint targets [yaw, shoulder, elbow, wrist] placing the finger tips at ``ee_target``."""
        ids, m, d = self._ids, self._model, self._scratch
        d.qpos[:] = qpos
        wrist_target = np.asarray(ee_target, float) + np.array([0.0, 0.0, C.TOOL_LENGTH])
        q = d.qpos[ids.arm_qpos[:3]].copy()
        for _ in range(_ITERS):
            d.qpos[ids.arm_qpos[:3]] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            err = wrist_target - d.site_xpos[ids.wrist_site]
            if float(err @ err) < 1e-10:
                break
            mujoco.mj_jacSite(m, d, self._jac, None, ids.wrist_site)
            jac = self._jac[:, ids.arm_dof[:3]]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + _DAMPING**2 * np.eye(3), err)
            q = np.clip(q + dq, self._lo, self._hi)
        wrist = -(q[1] + q[2])
        return np.array([q[0], q[1], q[2], wrist])

    def home_qpos(self, qpos: np.ndarray) -> np.ndarray:
        """A full qpos with the arm at :data:`EE_HOME` (solved from a bent-elbow seed)."""
        q = np.array(qpos, dtype=float)
        q[self._ids.arm_qpos[:3]] = [0.0, 1.0, -1.6]
        joints = self.solve(q, np.array(C.EE_HOME))
        for _ in range(3):  # refine: each solve starts from the previous answer
            q[self._ids.arm_qpos] = joints
            joints = self.solve(q, np.array(C.EE_HOME))
        q[self._ids.arm_qpos] = joints
        return q

    @staticmethod
    def finger_target(grip: float) -> float:
        """Gripper command in [-1, 1] (+1 open, -1 closed) -> per-finger slide position (m)."""
        return float((np.clip(grip, -1.0, 1.0) + 1.0) / 2.0 * C.FINGER_OPEN)
