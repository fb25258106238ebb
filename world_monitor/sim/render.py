"""Offscreen rendering tuned for CPU (llvmpipe): no shadows, no MSAA, fixed scene camera.

Shadows and 4x MSAA make MuJoCo ~15x slower on a software rasteriser; neither matters at 64x64.
The shadow flag lives in the ``mjvScene`` and is reset by every ``update_scene``, hence it is
cleared after each update here, in one place.
"""

from __future__ import annotations

import mujoco
import numpy as np

from world_monitor.sim.scene import SHIFT_GROUP

__all__ = ["SceneRenderer"]


class SceneRenderer:
    """Renders RGB frames and geom-id segmentation from the fixed ``scene`` camera."""

    def __init__(self, model: mujoco.MjModel, size: int, camera: int) -> None:
        model.vis.quality.offsamples = 0
        self._renderer = mujoco.Renderer(model, size, size)
        self._camera = camera
        self._opt = {}
        for show in (False, True):
            opt = mujoco.MjvOption()
            opt.geomgroup[SHIFT_GROUP] = int(show)
            opt.sitegroup[:] = 0  # sites are markers for code, never for the camera
            self._opt[show] = opt

    def _update(self, data: mujoco.MjData, show_shift_group: bool) -> None:
        self._renderer.update_scene(
            data, camera=self._camera, scene_option=self._opt[show_shift_group]
        )
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def rgb(self, data: mujoco.MjData, show_shift_group: bool) -> np.ndarray:
        """uint8[H, W, 3] frame of the current kinematic state."""
        self._update(data, show_shift_group)
        return self._renderer.render().copy()

    def geom_ids(self, data: mujoco.MjData, show_shift_group: bool) -> np.ndarray:
        """int32[H, W] id of the geom seen at each pixel (-1 for background)."""
        self._update(data, show_shift_group)
        self._renderer.enable_segmentation_rendering()
        try:
            seg = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        ids = seg[..., 0].astype(np.int32)
        ids[seg[..., 1] != int(mujoco.mjtObj.mjOBJ_GEOM)] = -1
        return ids

    def close(self) -> None:
        self._renderer.close()
