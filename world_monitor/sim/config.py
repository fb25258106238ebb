"""Simulator configuration and the physical constants shared by scene, controller and policies.

All geometry is in metres in the world frame: the table top is the plane z = 0, the arm base
sits on the near (negative y) table edge and the camera looks at the workspace from the far side.
Constants live in one module so the scene builder, the IK controller, the scripted policy and the
outcome checks can never disagree about, e.g., how tall the puck is or where the table ends.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACTION_DIM",
    "MAX_EE_DELTA",
    "SimConfig",
]

#: Action layout ``[dx, dy, dz, gripper]`` (Bridge/DROID-style end-effector deltas + gripper).
ACTION_DIM = 4
#: Largest end-effector displacement per control step (m). 0.03 m at 10 Hz = 0.3 m/s, a typical
#: tabletop teleoperation speed; larger commands are clipped per axis.
MAX_EE_DELTA = 0.03

# --- table (top surface at z = 0) -------------------------------------------------------------
TABLE_X = (-0.42, 0.42)
TABLE_Y = (-0.62, 0.34)
TABLE_THICKNESS = 0.04

# --- arm ------------------------------------------------------------------------------------------
ARM_BASE = (0.0, -0.52, 0.0)
SHOULDER_HEIGHT = 0.16
UPPER_ARM = 0.36
FOREARM = 0.36
#: Vertical distance from the wrist joint to the end-effector site (finger tips, tool pointing down).
TOOL_LENGTH = 0.10
#: Finger half-extent along the closing axis and the open half-gap (each finger slides this far).
FINGER_HALF = (0.008, 0.016, 0.03)
FINGER_OPEN = 0.025
#: Workspace box the commanded end-effector target is clamped to (keeps IK well-posed).
EE_BOUNDS = ((-0.36, 0.36), (-0.40, 0.28), (0.008, 0.30))
EE_HOME = (0.0, -0.18, 0.14)

# --- task objects ---------------------------------------------------------------------------------
PUCK_RADIUS = 0.04
PUCK_HALF_HEIGHT = 0.025
PUCK_MASS = 0.15
GOAL_RADIUS = 0.07
#: Object / goal sampling regions for in-distribution layouts.
OBJECT_REGION = ((-0.20, 0.20), (-0.20, 0.02))
GOAL_REGION = ((-0.22, 0.22), (-0.12, 0.14))
PUSH_DISTANCE = (0.12, 0.26)


@dataclass(frozen=True)
class SimConfig:
    """Episode-level settings.

    Defaults: 64x64 RGB frames, T = 50 frames at 10 Hz (5 s, enough for the scripted policy to
    reach, align and push with margin), physics at 2 ms (50 substeps per control step, fine
    enough for stable finger-puck contacts), chunks of H = 8 actions re-planned every 4 steps
    like a real action-chunking policy.
    """

    image_size: int = 64
    episode_length: int = 50
    fps: float = 10.0
    physics_dt: float = 0.002
    chunk_horizon: int = 8
    replan_every: int = 4
    #: Max per-channel |difference| (0-255) above which a pixel counts as changed for the masks
    #: of global shifts (lighting, camera pose). Local shifts use exact differences.
    mask_threshold: int = 12

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 256:
            raise ValueError(f"image_size must be in [16, 256], got {self.image_size}")
        if self.episode_length < 2:
            raise ValueError(f"episode_length must be >= 2, got {self.episode_length}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 0 < self.physics_dt <= 0.5 / self.fps:
            raise ValueError(f"physics_dt must be in (0, {0.5 / self.fps}], got {self.physics_dt}")
        if not 1 <= self.replan_every <= self.chunk_horizon:
            raise ValueError(
                f"need 1 <= replan_every ({self.replan_every}) <= chunk_horizon "
                f"({self.chunk_horizon})"
            )

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return max(1, round(1.0 / (self.fps * self.physics_dt)))
