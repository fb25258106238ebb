"""Scenario registry: in-distribution plus named distribution-shift families.

A shift is described by a :class:`ShiftPlan`: model-field patches that switch on at the onset
step, optional mocap poses for the shift-only bodies (obstacle, distractor) and how its
ground-truth mask is made. Patches never change the model's structure, so an episode is
bit-identical to its in-distribution twin (same seed) before onset, and the nominal view of the
same state can be rendered by temporarily reverting the patches.

Masks (``mask_mode``):
- ``"exact"``: pixels whose colour differs at all between the shifted and nominal render of the
  same state (local shifts: unseen_object, distractor, table_color, ee_appearance).
- ``"threshold"``: max per-channel difference > ``SimConfig.mask_threshold`` (global shifts:
  lighting, camera_pose), because there almost every pixel moves a little.
- ``"segmentation"``: dynamics does not change appearance, so the mask is defined as the pixels
  of the affected bodies (arm incl. gripper, and the puck) from onset on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import mujoco
import numpy as np

from world_monitor.sim.layout import Layout
from world_monitor.sim.scene import CAMERA_LOOKAT, CAMERA_POS, SceneIds, look_at_quat

__all__ = [
    "IN_DISTRIBUTION",
    "Patch",
    "Scenario",
    "ShiftPlan",
    "describe_scenarios",
    "get_scenario",
    "list_scenarios",
]

IN_DISTRIBUTION = "in_distribution"
MaskMode = Literal["exact", "threshold", "segmentation"]

#: Model fields a patch may touch. The env snapshots them once and restores them on every reset.
PATCHABLE_FIELDS = (
    "geom_rgba",
    "geom_size",
    "geom_rbound",
    "geom_aabb",
    "geom_friction",
    "body_pos",
    "body_mass",
    "body_inertia",
    "actuator_gainprm",
    "actuator_biasprm",
    "actuator_forcerange",
    "light_diffuse",
    "light_ambient",
    "light_specular",
    "light_dir",
    "light_pos",
    "cam_pos",
    "cam_quat",
)
#: Fields read through ``mj_kinematics`` (world poses of lights/cameras/static bodies).
KINEMATIC_FIELDS = frozenset({"light_dir", "light_pos", "cam_pos", "cam_quat", "body_pos"})


@dataclass(frozen=True)
class Patch:
    """Set ``getattr(model, field)[index] = value`` while the shift is active."""

    field: str
    index: int
    value: np.ndarray


@dataclass
class ShiftPlan:
    """Everything the env needs to switch a shift on and to draw its ground-truth mask."""

    name: str
    severity: float
    patches: list[Patch] = field(default_factory=list)
    #: mocap id -> function(frame index t) -> world position while active.
    mocap: dict[int, Callable[[int], np.ndarray]] = field(default_factory=dict)
    show_shift_group: bool = False
    mask_mode: MaskMode = "exact"
    mask_geoms: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


ShiftBuilder = Callable[[mujoco.MjModel, SceneIds, Layout, float, np.random.Generator], ShiftPlan]


@dataclass(frozen=True)
class Scenario:
    """A named scenario. ``build`` is None for in-distribution (no shift)."""

    name: str
    description: str
    default_severity: float | None
    build: ShiftBuilder | None

    @property
    def is_shift(self) -> bool:
        return self.build is not None


def _rgba_patch(model: mujoco.MjModel, geom: int, rgb: np.ndarray, s: float) -> Patch:
    """Blend a geom's colour toward ``rgb`` by ``s`` (0 = unchanged, 1 = fully ``rgb``)."""
    value = model.geom_rgba[geom].copy()
    value[:3] = (1.0 - s) * value[:3] + s * np.asarray(rgb)
    return Patch("geom_rgba", geom, value)


def _box_size_patches(model: mujoco.MjModel, geom: int, half: np.ndarray) -> list[Patch]:
    """Resize a box geom consistently (size, bounding sphere and AABB used by collision)."""
    aabb = model.geom_aabb[geom].copy()
    aabb[3:] = half
    return [
        Patch("geom_size", geom, np.asarray(half, float)),
        Patch("geom_rbound", geom, np.array(float(np.linalg.norm(half)))),
        Patch("geom_aabb", geom, aabb),
    ]


def _lighting(model, ids, layout, s, rng) -> ShiftPlan:
    del layout
    light = ids.key_light
    brighter = bool(rng.random() < 0.4)
    scale = 1.0 + 0.9 * s if brighter else 1.0 - 0.75 * s
    tint = rng.uniform(0.35, 1.0, size=3)
    tint /= tint.max()
    colour = (1.0 - s) * np.ones(3) + s * tint
    yaw = rng.uniform(-np.pi, np.pi) * s
    tilt = s * rng.uniform(0.3, 0.9)
    d = model.light_dir[light].copy()
    cy, sy = np.cos(yaw), np.sin(yaw)
    d[:2] = [cy * d[0] - sy * d[1], sy * d[0] + cy * d[1]]
    d[:2] += tilt * d[:2] / max(np.linalg.norm(d[:2]), 1e-6)
    d /= np.linalg.norm(d)
    patches = [
        Patch(
            "light_diffuse",
            light,
            np.clip(model.light_diffuse[light] * scale * colour, 0, 1),
        ),
        Patch(
            "light_ambient",
            light,
            np.clip(model.light_ambient[light] * scale * colour, 0, 1),
        ),
        Patch("light_dir", light, d),
    ]
    extra = {
        "brighter": brighter,
        "scale": round(scale, 4),
        "tint": np.round(tint, 4).tolist(),
    }
    return ShiftPlan("lighting", s, patches, mask_mode="threshold", extra=extra)


def _unseen_object(model, ids, layout, s, rng) -> ShiftPlan:
    """A box on the push path: the puck (or the arm) runs into it unless severity is low."""
    path = layout.goal_xy - layout.object_xy
    dist = float(np.linalg.norm(path))
    u = path / dist
    normal = np.array([-u[1], u[0]])
    frac = rng.uniform(0.45, 0.65)
    lateral = (1.0 - s) * 0.13 * rng.choice([-1.0, 1.0])
    xy = layout.object_xy + u * dist * frac + normal * lateral
    half = np.array([0.018 + 0.025 * s, 0.018 + 0.025 * s, 0.035 + 0.07 * s])
    pos = np.array([xy[0], xy[1], half[2]])
    palette = np.array([[0.2, 0.35, 0.85], [0.6, 0.25, 0.75], [0.1, 0.7, 0.75], [0.9, 0.9, 0.9]])
    colour = palette[rng.integers(len(palette))]
    rgba = np.array([*colour, 1.0])
    patches = _box_size_patches(model, ids.obstacle_geom, half)
    patches.append(Patch("geom_rgba", ids.obstacle_geom, rgba))
    extra = {
        "obstacle_pos": np.round(pos, 5).tolist(),
        "obstacle_half": np.round(half, 5).tolist(),
    }
    return ShiftPlan(
        "unseen_object",
        s,
        patches,
        mocap={ids.obstacle_mocap: lambda t: pos},
        show_shift_group=True,
        extra=extra,
    )


def _distractor(model, ids, layout, s, rng) -> ShiftPlan:
    """A ball hovering and weaving over the workspace (visual only: it touches nothing)."""
    del model, layout
    radius = 0.02 + 0.03 * s
    speed = 0.05 + 0.15 * s  # Lissajous phase advance per frame (rad)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    centre = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.15, 0.05)])
    amp = np.array([0.25, 0.18])
    height = rng.uniform(0.12, 0.22)
    colour = np.array([*rng.uniform(0.6, 1.0, size=3) * [1.0, 0.9, 0.2], 1.0])

    def pos(t: int) -> np.ndarray:
        a = speed * t
        xy = centre + amp * np.array([np.sin(a + phase[0]), np.sin(1.7 * a + phase[1])])
        return np.array([xy[0], xy[1], height + 0.04 * np.sin(3.0 * a)])

    patches = [
        Patch("geom_size", ids.distractor_geom, np.array([radius, 0.0, 0.0])),
        Patch("geom_rbound", ids.distractor_geom, np.array(radius)),
        Patch("geom_rgba", ids.distractor_geom, colour),
    ]
    extra = {"radius": round(radius, 4), "speed": round(speed, 4)}
    return ShiftPlan(
        "distractor",
        s,
        patches,
        mocap={ids.distractor_mocap: pos},
        show_shift_group=True,
        extra=extra,
    )


def _camera_pose(model, ids, layout, s, rng) -> ShiftPlan:
    del model, layout
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    pos = CAMERA_POS + direction * 0.22 * s
    look = CAMERA_LOOKAT + np.array([*rng.normal(size=2), 0.0]) * 0.06 * s
    patches = [
        Patch("cam_pos", ids.camera, pos),
        Patch("cam_quat", ids.camera, look_at_quat(pos, look)),
    ]
    extra = {
        "cam_pos": np.round(pos, 5).tolist(),
        "cam_lookat": np.round(look, 5).tolist(),
    }
    return ShiftPlan("camera_pose", s, patches, mask_mode="threshold", extra=extra)


def _table_color(model, ids, layout, s, rng) -> ShiftPlan:
    del layout
    palette = np.array(
        [
            [0.15, 0.3, 0.6],
            [0.75, 0.75, 0.78],
            [0.2, 0.45, 0.2],
            [0.45, 0.15, 0.4],
            [0.1, 0.1, 0.1],
        ]
    )
    target = palette[rng.integers(len(palette))]
    patches = [_rgba_patch(model, ids.table_geom, target, s)]
    if s > 0.5:  # strong shifts also repaint the floor (a new room)
        floor = palette[(rng.integers(len(palette) - 1) + 1) % len(palette)] * 0.5
        patches.append(_rgba_patch(model, ids.floor_geom, floor, s))
    extra = {"table_rgb": np.round(target, 4).tolist()}
    return ShiftPlan("table_color", s, patches, extra=extra)


def _ee_appearance(model, ids, layout, s, rng) -> ShiftPlan:
    del layout
    palm_rgb = rng.uniform(0.0, 1.0, size=3)
    finger_rgb = rng.uniform(0.4, 1.0, size=3)
    patches = [_rgba_patch(model, ids.palm_geom, palm_rgb, s)]
    patches += [_rgba_patch(model, g, finger_rgb, s) for g in ids.finger_geoms]
    half = model.geom_size[ids.palm_geom] * np.array([1 + 0.8 * s, 1 + 1.2 * s, 1 + 0.5 * s])
    patches += _box_size_patches(model, ids.palm_geom, half)
    extra = {
        "palm_rgb": np.round(palm_rgb, 4).tolist(),
        "palm_half": np.round(half, 5).tolist(),
    }
    return ShiftPlan("ee_appearance", s, patches, extra=extra)


def _dynamics(model, ids, layout, s, rng) -> ShiftPlan:
    """Weaker, force-limited motors plus a heavier, grippier puck: pushes stall or fall short."""
    del layout, rng
    motor = 1.0 - 0.9 * s
    mass = 1.0 + 12.0 * s
    patches = []
    for a in ids.arm_act:
        gain = model.actuator_gainprm[a].copy()
        bias = model.actuator_biasprm[a].copy()
        gain[0] *= motor
        bias[1] *= motor
        patches.append(Patch("actuator_gainprm", a, gain))
        patches.append(Patch("actuator_biasprm", a, bias))
        patches.append(Patch("actuator_forcerange", a, model.actuator_forcerange[a] * motor))
    b = ids.puck_body
    patches.append(Patch("body_mass", b, np.array(model.body_mass[b] * mass)))
    patches.append(Patch("body_inertia", b, model.body_inertia[b] * mass))
    patches.append(
        Patch(
            "geom_friction",
            ids.puck_geom,
            model.geom_friction[ids.puck_geom] * (1 + 1.5 * s),
        )
    )
    geoms = np.append(ids.robot_geoms, ids.puck_geom)
    extra = {"motor_scale": round(motor, 4), "mass_scale": round(mass, 4)}
    return ShiftPlan(
        "dynamics", s, patches, mask_mode="segmentation", mask_geoms=geoms, extra=extra
    )


_REGISTRY: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            IN_DISTRIBUTION,
            "randomised puck/goal positions and small colour jitter, no shift",
            None,
            None,
        ),
        Scenario(
            "lighting",
            "key light dimmed/brightened, tinted and turned (global appearance change)",
            0.6,
            _lighting,
        ),
        Scenario(
            "unseen_object",
            "a new box on the push path; causes collisions at default severity",
            0.6,
            _unseen_object,
        ),
        Scenario(
            "distractor",
            "a yellow ball weaving over the workspace (visual only, no contact)",
            0.6,
            _distractor,
        ),
        Scenario(
            "camera_pose",
            "scene camera moved up to 0.22*severity m and re-aimed",
            0.5,
            _camera_pose,
        ),
        Scenario(
            "table_color",
            "table (and at severity>0.5 the floor) repainted toward a new colour",
            0.7,
            _table_color,
        ),
        Scenario(
            "dynamics",
            "weaker motors + heavier, grippier puck; invisible, causes failures at default",
            0.7,
            _dynamics,
        ),
        Scenario(
            "ee_appearance",
            "gripper palm/fingers recoloured and palm enlarged",
            0.7,
            _ee_appearance,
        ),
    ]
}


def list_scenarios() -> list[str]:
    """Names of all scenarios, in-distribution first."""
    return list(_REGISTRY)


def describe_scenarios() -> dict[str, str]:
    """name -> one-line description (with the default severity) for ``--help`` texts."""
    out = {}
    for s in _REGISTRY.values():
        sev = "" if s.default_severity is None else f" [default severity {s.default_severity}]"
        out[s.name] = s.description + sev
    return out


def get_scenario(name: str) -> Scenario:
    """Look a scenario up by name; ValueError naming the bad name and the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; valid scenarios: {', '.join(_REGISTRY)}"
        ) from None


def resolve_severity(scenario: Scenario, severity: float | None) -> float | None:
    """Default or validate a severity; in-distribution has none."""
    if not scenario.is_shift:
        if severity not in (None, 0, 0.0):
            raise ValueError(
                f"scenario {IN_DISTRIBUTION!r} takes no severity, got {severity!r}; "
                f"valid scenarios: {', '.join(_REGISTRY)}"
            )
        return None
    if severity is None:
        return scenario.default_severity
    sev = float(severity)
    if not (np.isfinite(sev) and 0.0 <= sev <= 1.0):
        raise ValueError(
            f"severity for scenario {scenario.name!r} must be in [0, 1], got {severity!r}; "
            f"valid scenarios: {', '.join(_REGISTRY)}"
        )
    return sev
