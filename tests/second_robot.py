"""A second robot that is not the built-in tabletop: a 3-joint planar arm driven by joint
torques, seen by a 48x40 overhead camera, recorded as rosbag2 on its own topic names.

Why it lives in the tests: the product is measured on robots it was not written for, so one such
robot goes through the whole bring-your-own-robot path in CI (bags -> import with labels and
``--split auto`` -> train -> calibrate -> replay). Its scene is a MuJoCo model defined here (no
assets to fetch); the only shift it knows is ``lights_off`` (the scene light dims at the onset).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from world_monitor.data.bag import export_episode_bag  # noqa: E402
from world_monitor.data.episode import Episode, EpisodeMeta  # noqa: E402

HEIGHT, WIDTH = 48, 40
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

    def _lights(self, on: bool) -> None:
        scale = 1.0 if on else 0.08
        self.model.light_diffuse[self.light] = self.bright * scale
        self.model.vis.headlight.ambient[:] = self.headlight[0] * scale
        self.model.vis.headlight.diffuse[:] = self.headlight[1] * scale

    def _frame(self) -> np.ndarray:
        self.renderer.update_scene(self.data, camera="overhead")
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        return self.renderer.render().copy()

    def episode(self, seed: int, length: int = 14, lights_off_at: int | None = None) -> Episode:
        """Smooth random torques (an "exploration" policy); lights dim from ``lights_off_at``."""
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = rng.uniform(-np.pi, np.pi, JOINTS)
        torque = rng.uniform(-0.2, 0.2, JOINTS)
        frames, actions = [], []
        for t in range(length):
            self._lights(lights_off_at is None or t < lights_off_at)
            mujoco.mj_forward(self.model, self.data)
            frames.append(self._frame())
            torque = np.clip(0.7 * torque + rng.normal(0, 0.08, JOINTS), -0.2, 0.2)
            actions.append(torque.astype(np.float32))
            self.data.ctrl[:] = torque
            for _ in range(int(round(1.0 / (FPS * self.model.opt.timestep)))):
                mujoco.mj_step(self.model, self.data)
        self._lights(True)
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
    root: Path, *, in_distribution: int, shifted: int, onset: int = 6
) -> tuple[list[Path], Path]:
    """Bags of ``in_distribution`` + ``shifted`` episodes (no episode-meta topic, torques in
    ``effort``) and the labels CSV a team would write for them."""
    arm = PlanarArm()
    bags: list[Path] = []
    rows = ["bag,shift,onset_s,severity,success"]
    for i in range(in_distribution + shifted):
        shift = i >= in_distribution
        ep = arm.episode(i, lights_off_at=onset if shift else None)
        name = f"arm_{i:03d}"
        bags.append(
            export_episode_bag(
                ep,
                root / "bags" / name,
                image_topic=IMAGE_TOPIC,
                action_topic=ACTION_TOPIC,
                horizon=3,
                joint_names=[f"j{k}" for k in range(JOINTS)],
                action_field="effort",
                write_meta=False,
            )
        )
        if shift:
            rows.append(f"{name},lights_off,{onset / FPS:g},1.0,true")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return bags, labels
