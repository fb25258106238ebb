"""Prepare camera frames of any resolution for a bundle's fixed input size, and map results back.

Why this exists: a bundle is trained at one small resolution (the shipped one at 64x64), while a
real camera publishes 640x480, 1280x720 or anything else. Refusing every other size (what the
monitor did until v0.6) makes the node useless on a robot; resizing silently in some places and
not in others makes the monitor see different pixels at run time than at calibration, which
voids the calibrated thresholds. So there is exactly one transform, declared by the user and
applied identically by the ROS node, offline replay and dataset import:

1. optional **crop ROI** ``(x, y, w, h)`` in camera pixels (e.g. cut away a static robot base or
   the bottom rows of a wide-angle lens);
2. a **resize mode** to the bundle's ``(H, W)``:

   * ``stretch``: scale each axis independently (whole field of view kept, aspect changes);
   * ``center_crop``: scale to cover, crop the centre (aspect kept, edges dropped);
   * ``letterbox``: scale to fit, pad with black (aspect and field of view kept, fewer pixels).

``stretch`` is the default because a safety monitor should not be blind to the image edges.
Downscaling uses PIL's antialiased bilinear filter.

:meth:`FramePrep.map_back` does the inverse for images the monitor produces (the alert heatmap):
a bundle-sized RGB image becomes a camera-sized one aligned with the camera's pixels, so it can be
published with the camera's own header and overlaid on the raw stream. Camera pixels the monitor
never saw (outside the ROI, or cropped away by ``center_crop``) are painted ``UNSEEN`` grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "RESIZE_MODES",
    "UNSEEN",
    "FramePrep",
    "FramePrepError",
    "parse_roi",
    "parse_size",
    "prepare_episode",
]

RESIZE_MODES: tuple[str, ...] = ("stretch", "center_crop", "letterbox")
#: colour of heatmap pixels the monitor never saw (outside the crop)
UNSEEN: tuple[int, int, int] = (96, 96, 96)


class FramePrepError(ValueError):
    """A frame that cannot be prepared (ROI outside the image, empty image); names the problem."""


def parse_roi(value: Sequence[int] | str | None) -> tuple[int, int, int, int] | None:
    """``[x, y, w, h]`` / ``"x,y,w,h"`` -> a validated tuple; empty -> ``None`` (whole image)."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            items = [int(p) for p in parts]
        except ValueError:
            raise FramePrepError(f"crop ROI must be integers x,y,w,h, got {value!r}") from None
    else:
        items = [int(v) for v in value]
    if not items:
        return None
    if len(items) != 4:
        raise FramePrepError(f"crop ROI must have 4 integers x,y,w,h, got {items}")
    x, y, w, h = items
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise FramePrepError(f"crop ROI needs x, y >= 0 and w, h > 0, got {items}")
    return (x, y, w, h)


def parse_size(text: str) -> tuple[int, int]:
    """``"64x64"`` / ``"48x64"`` (height x width) -> ``(H, W)``."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise FramePrepError(f"image size must be HxW, e.g. 64x64, got {text!r}") from None
    if h <= 0 or w <= 0 or h * w > 4096 * 4096:
        raise FramePrepError(f"image size {h}x{w} out of range")
    return (h, w)


@dataclass(frozen=True)
class _Geometry:
    """Where the bundle's pixels come from in one camera resolution (cached per size)."""

    roi: tuple[int, int, int, int]  # x, y, w, h of the ROI in the camera image
    scaled_hw: tuple[int, int]  # the ROI after scaling, before crop/pad
    offset: tuple[int, int]  # (top, left): centre-crop start in the scaled ROI, or pad
    identity: bool


@dataclass(frozen=True)
class FramePrep:
    """The one camera-to-bundle transform (see module docstring).

    Args:
        out_hw: the bundle's ``(H, W)``.
        mode: ``stretch`` | ``center_crop`` | ``letterbox``.
        roi: optional ``(x, y, w, h)`` crop in camera pixels, applied first.
    """

    out_hw: tuple[int, int]
    mode: str = "stretch"
    roi: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise FramePrepError(
                f"image_resize must be one of {'|'.join(RESIZE_MODES)}, got {self.mode!r}"
            )
        h, w = (int(v) for v in self.out_hw)
        if h <= 0 or w <= 0:
            raise FramePrepError(f"output size must be positive, got {self.out_hw}")
        object.__setattr__(self, "out_hw", (h, w))
        object.__setattr__(self, "roi", parse_roi(self.roi))

    def describe(self) -> str:
        """One line for logs and diagnostics, e.g. ``stretch to 64x64, roi 0,0,640,400``."""
        roi = "" if self.roi is None else ", roi " + ",".join(str(v) for v in self.roi)
        return f"{self.mode} to {self.out_hw[0]}x{self.out_hw[1]}{roi}"

    def geometry(self, camera_hw: tuple[int, int]) -> _Geometry:
        return _geometry(self, (int(camera_hw[0]), int(camera_hw[1])))

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 [h, w, 3] camera frame -> uint8 [H, W, 3] (the same array when no work is due)."""
        if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise FramePrepError(f"cannot prepare an image of shape {rgb.shape}")
        g = self.geometry(rgb.shape[:2])
        if g.identity:
            return rgb
        x, y, w, h = g.roi
        roi = rgb[y : y + h, x : x + w]
        scaled = _resize(roi, g.scaled_hw)
        oh, ow = self.out_hw
        top, left = g.offset
        if self.mode == "letterbox":
            out = np.zeros((oh, ow, rgb.shape[2]), np.uint8)
            out[top : top + scaled.shape[0], left : left + scaled.shape[1]] = scaled
            return out
        if self.mode == "center_crop":
            return np.ascontiguousarray(scaled[top : top + oh, left : left + ow])
        return scaled

    def map_back(self, image: np.ndarray, camera_hw: tuple[int, int]) -> np.ndarray:
        """Bundle-sized uint8 [H, W, 3] (e.g. the heatmap) -> camera-sized [h, w, 3], pixel-aligned
        with the camera frame; pixels the monitor never saw are :data:`UNSEEN`."""
        ch, cw = int(camera_hw[0]), int(camera_hw[1])
        g = self.geometry((ch, cw))
        if g.identity:
            return image
        oh, ow = self.out_hw
        sh, sw = g.scaled_hw
        top, left = g.offset
        if self.mode == "letterbox":
            scaled = image[top : top + sh, left : left + sw]  # drop the padding
        elif self.mode == "center_crop":
            scaled = np.empty((sh, sw, image.shape[2]), np.uint8)
            scaled[:] = np.asarray(UNSEEN, np.uint8)
            scaled[top : top + oh, left : left + ow] = image
        else:
            scaled = image
        x, y, w, h = g.roi
        roi = _resize(scaled, (h, w))
        if (x, y, w, h) == (0, 0, cw, ch):
            return roi
        out = np.empty((ch, cw, image.shape[2]), np.uint8)
        out[:] = np.asarray(UNSEEN, np.uint8)
        out[y : y + h, x : x + w] = roi
        return out


@lru_cache(maxsize=64)
def _geometry(prep: FramePrep, camera_hw: tuple[int, int]) -> _Geometry:
    ch, cw = camera_hw
    if prep.roi is None:
        roi = (0, 0, cw, ch)
    else:
        x, y, w, h = prep.roi
        if x + w > cw or y + h > ch:
            raise FramePrepError(
                f"crop ROI x={x} y={y} w={w} h={h} does not fit in the {cw}x{ch} camera image"
            )
        roi = prep.roi
    _, _, rw, rh = roi
    oh, ow = prep.out_hw
    if prep.mode == "stretch":
        scaled, offset = (oh, ow), (0, 0)
    else:
        # cover (crop) or fit (letterbox) with the aspect kept
        pick = max if prep.mode == "center_crop" else min
        s = pick(oh / rh, ow / rw)
        sh = min(oh, round(rh * s)) if prep.mode == "letterbox" else max(oh, round(rh * s))
        sw = min(ow, round(rw * s)) if prep.mode == "letterbox" else max(ow, round(rw * s))
        sh, sw = max(1, sh), max(1, sw)
        offset = (abs(sh - oh) // 2, abs(sw - ow) // 2)
        scaled = (sh, sw)
    identity = roi == (0, 0, cw, ch) and (ch, cw) == (oh, ow)
    return _Geometry(roi=roi, scaled_hw=scaled, offset=offset, identity=identity)


def _resize(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of a uint8 [h, w, 3] array (a no-op at the same size)."""
    if rgb.shape[:2] == tuple(hw):
        return np.ascontiguousarray(rgb)
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(img.resize((int(hw[1]), int(hw[0])), Image.BILINEAR), dtype=np.uint8)


def prepare_episode(episode: Any, prep: FramePrep) -> Any:
    """The episode with every frame (and shift mask) prepared by ``prep``: how recordings are
    imported for training and calibration, so they see the pixels the node will see."""
    import dataclasses

    frames = np.stack([prep.prepare(np.asarray(f)) for f in episode.frames])
    mask = episode.shift_mask
    if mask is not None:
        as_rgb = [np.repeat(np.asarray(m, np.uint8)[..., None] * 255, 3, axis=2) for m in mask]
        mask = np.stack([prep.prepare(m)[..., 0] > 127 for m in as_rgb])
    return dataclasses.replace(episode, frames=np.ascontiguousarray(frames), shift_mask=mask)
