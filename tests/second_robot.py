"""A second robot that is not the built-in tabletop: a 3-joint planar arm driven by joint
torques, seen by a 48x40 overhead camera, recorded as rosbag2 on its own topic names.

Why it lives in the tests: the product is measured on robots it was not written for, so one such
robot goes through the whole bring-your-own-robot path in CI (bags -> import with labels and
``--split auto`` -> train -> calibrate -> replay). Its scene is a MuJoCo model defined here (no
assets to fetch). It knows three shifts, each starting at an onset frame: ``lights_off`` (the
scene light dims), ``occluder`` (a grey slab appears over part of the workspace, between camera
and arm) and ``weak_motor`` (every joint's torque gain drops to a quarter: the arm moves less than
its commands say, the camera image itself looks normal).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from world_monitor.data.bag import export_episode_bag  # noqa: E402
from world_monitor.data.episode import Episode, EpisodeMeta  # noqa: E402

HEIGHT, WIDTH = 48, 40
SHIFTS = ("lights_off", "occluder", "weak_motor")
FPS = 10.0
JOINTS = 3
IMAGE_TOPIC = "/arm/overhead/image_raw"
ACTION_TOPIC = "/arm/controller/torque_chunk"

ARM_XML = """
<mujoco model="planar_arm">
  <option timestep="0.01" gravity="0 0 0"/>
  <visual><headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5"/></visual>
  <worldbody>
    <light name="sun" pos="0 0 2" dir="0 0 -1" diffuse="0.9 0.9 0.8"/>
    <geom type="plane" size="0.6 0.6 0.01" rgba="0.25 0.45 0.3 1"/>
    <camera name="overhead" pos="0 0 1.1" xyaxes="1 0 0 0 1 0"/>
    <body name="occluder" mocap="true" pos="0 0 0.6">
      <geom name="occluder" type="box" size="0.09 0.07 0.005" rgba="0.55 0.55 0.55 0"
            contype="0" conaffinity="0"/>
    </body>
    <body name="l0" pos="0 0 0.03">
      <joint name="j0" type="hinge" axis="0 0 1" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.16 0 0" size="0.025" rgba="0.9 0.5 0.1 1"/>
      <body name="l1" pos="0.16 0 0">
        <joint name="j1" type="hinge" axis="0 0 1" damping="0.05"/>
        <geom type="capsule" fromto="0 0 0 0.13 0 0" size="0.02" rgba="0.2 0.4 0.9 1"/>
        <body name="l2" pos="0.13 0 0">
          <joint name="j2" type="hinge" axis="0 0 1" damping="0.05"/>
          <geom type="capsule" fromto="0 0 0 0.09 0 0" size="0.018" rgba="0.9 0.9 0.9 1"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="j0" gear="1" ctrlrange="-0.2 0.2"/>
    <motor joint="j1" gear="1" ctrlrange="-0.2 0.2"/>
    <motor joint="j2" gear="1" ctrlrange="-0.2 0.2"/>
  </actuator>
</mujoco>
"""


class PlanarArm:
    """The arm's model, data and an offscreen renderer (one per process)."""

    def __init__(self) -> None:
        self.model = mujoco.MjModel.from_xml_string(ARM_XML)
        self.model.vis.quality.offsamples = 0
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, HEIGHT, WIDTH)
        self.light = self.model.light("sun").id
        self.bright = self.model.light_diffuse[self.light].copy()
        self.headlight = (
            self.model.vis.headlight.ambient.copy(),
            self.model.vis.headlight.diffuse.copy(),
        )
        self.occluder = self.model.geom("occluder").id
        self.gear = self.model.actuator_gear[:, 0].copy()

    def _shift(self, name: str | None, active: bool, rng_place: np.ndarray) -> None:
        """Apply (``active``) or undo one named shift on the model."""
        self._lights(not (active and name == "lights_off"))
        self.model.geom_rgba[self.occluder, 3] = 1.0 if active and name == "occluder" else 0.0
        self.data.mocap_pos[0, :2] = rng_place
        scale = 0.25 if active and name == "weak_motor" else 1.0
        self.model.actuator_gear[:, 0] = self.gear * scale

    def _lights(self, on: bool) -> None:
        scale = 1.0 if on else 0.08
        self.model.light_diffuse[self.light] = self.bright * scale
        self.model.vis.headlight.ambient[:] = self.headlight[0] * scale
        self.model.vis.headlight.diffuse[:] = self.headlight[1] * scale

    def _frame(self) -> np.ndarray:
        self.renderer.update_scene(self.data, camera="overhead")
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        return self.renderer.render().copy()

    def episode(
        self,
        seed: int,
        length: int = 14,
        shift: str | None = None,
        onset: int | None = None,
    ) -> Episode:
        """Smooth random torques (an "exploration" policy); ``shift`` (one of ``SHIFTS``) acts
        from frame ``onset`` on."""
        if shift is not None and (shift not in SHIFTS or onset is None):
            raise ValueError(f"shift must be one of {SHIFTS} with an onset, got {shift!r}")
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = rng.uniform(-np.pi, np.pi, JOINTS)
        place = rng.uniform(-0.2, 0.2, 2)
        torque = rng.uniform(-0.2, 0.2, JOINTS)
        frames, actions = [], []
        for t in range(length):
            self._shift(shift, shift is not None and t >= onset, place)
            mujoco.mj_forward(self.model, self.data)
            frames.append(self._frame())
            torque = np.clip(0.7 * torque + rng.normal(0, 0.08, JOINTS), -0.2, 0.2)
            actions.append(torque.astype(np.float32))
            self.data.ctrl[:] = torque
            for _ in range(int(round(1.0 / (FPS * self.model.opt.timestep)))):
                mujoco.mj_step(self.model, self.data)
        self._shift(None, False, place)
        meta = EpisodeMeta(
            scenario="planar_arm",
            seed=seed,
            fps=FPS,
            success=True,
            policy="random_torque",
        )
        stamps = 1_700_000_000.0 + seed * 100.0 + np.arange(length) / FPS
        return Episode(np.stack(frames), np.stack(actions), stamps, meta)


def record(
    root: Path,
    *,
    in_distribution: int,
    shifted: int,
    onset: int | tuple[int, int] = 6,
    length: int = 14,
    shifts: Sequence[str] = ("lights_off",),
    horizon: int = 3,
) -> tuple[list[Path], Path]:
    """Bags of ``in_distribution`` episodes plus ``shifted`` per family in ``shifts`` (no
    episode-meta topic, torques in ``effort``) and the labels CSV a team would write for them.
    ``onset`` is one frame or a ``(low, high)`` range drawn per episode (seeded)."""
    arm = PlanarArm()
    bags: list[Path] = []
    rows = ["bag,shift,onset_s,severity,success"]
    plan = [None] * in_distribution + [s for s in shifts for _ in range(shifted)]
    onsets = np.random.default_rng(12345).integers(
        *(onset if isinstance(onset, tuple) else (onset, onset)), endpoint=True, size=len(plan)
    )
    for i, shift in enumerate(plan):
        at = int(onsets[i])
        ep = arm.episode(i, length=length, shift=shift, onset=at if shift else None)
        name = f"arm_{i:03d}"
        bags.append(
            export_episode_bag(
                ep,
                root / "bags" / name,
                image_topic=IMAGE_TOPIC,
                action_topic=ACTION_TOPIC,
                horizon=horizon,
                joint_names=[f"j{k}" for k in range(JOINTS)],
                action_field="effort",
                write_meta=False,
            )
        )
        if shift:
            rows.append(f"{name},{shift},{at / FPS:g},1.0,true")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return bags, labels
