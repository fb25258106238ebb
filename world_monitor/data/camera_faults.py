"""Camera faults applied to recorded frames: a lens smudge and a frozen camera.

Why: the shift families of the simulator change the *world* (light, objects, motors). A camera
that goes bad while the world stays normal is a different, common failure on real robots — a
fingerprint or splash on the lens, a driver that keeps re-publishing its last frame — and the
monitor must stop for it too (issue 16: a smudge of ≈ 3 % of the frame was never stopped).
These are held-out perturbations: nothing in training or calibration uses them.

Both take an episode's frames and an onset and return new frames plus the ground-truth mask of
where the fault is visible, so `evaluate`-style scoring (AUROC, STOP, localisation) applies.

* :func:`lens_smudge` — a soft elliptical region (random position and orientation, seeded)
  where the image is defocused and veiled: ``out = (1 − a)·I + a·((1 − v)·blur(I) + v·haze)``
  with ``a`` a smooth opacity falling off at the edge. ``area`` is the fraction of the frame
  where ``a ≥ 0.5`` (the visibly smudged part, the mask).
* :func:`frozen_camera` — every frame from the onset on is the onset frame (mask: the whole
  frame, since nothing in it is current any more).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FaultedFrames", "frozen_camera", "lens_smudge", "smudge_opacity"]


@dataclass(frozen=True)
class FaultedFrames:
    """Frames with a fault from ``onset`` on, and where it shows (``mask[t]`` False before)."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    mask: np.ndarray  # bool [T, H, W]
    onset: int


def _check(frames: np.ndarray, onset: int) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 [T,H,W,3], got {f.dtype} {list(f.shape)}")
    if not 0 <= onset < len(f):
        raise ValueError(f"onset {onset} outside the episode's {len(f)} frames")
    return f


def smudge_opacity(
    size: tuple[int, int], area: float, rng: np.random.Generator, *, aspect: float = 1.6
) -> np.ndarray:
    """Opacity ``a [H, W]`` in [0, 1] of one smudge covering ``area`` of the frame at ``a ≥ 0.5``.

    An ellipse with axis ratio ``aspect`` and a random angle, centred at a random point at least
    one semi-axis from the border (a smudge on the lens, not a vignette), with a smooth
    ``1 − smoothstep`` falloff from ``a = 1`` inside to 0 at 1.6× the half-opacity radius.
    """
    if not 0.0 < area < 0.5:
        raise ValueError(f"smudge area {area}: expected a fraction of the frame in (0, 0.5)")
    h, w = size
    # a >= 0.5 inside r <= 1 of the normalised ellipse: pi * a * b = area * h * w
    semi_minor = np.sqrt(area * h * w / (np.pi * aspect))
    semi_major = aspect * semi_minor
    margin = min(semi_major, min(h, w) / 2 - 1)
    cy = rng.uniform(margin, h - margin)
    cx = rng.uniform(margin, w - margin)
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / semi_major
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / semi_minor
    r = np.sqrt(u**2 + v**2)
    # a = 1 for r <= 0.4, 0.5 at r = 1, 0 for r >= 1.6 (smoothstep between 0.4 and 1.6)
    s = np.clip((r - 0.4) / 1.2, 0.0, 1.0)
    return 1.0 - s * s * (3.0 - 2.0 * s)


def lens_smudge(
    frames: np.ndarray,
    onset: int,
    *,
    area: float = 0.03,
    seed: int = 0,
    veil: float = 0.45,
    haze: tuple[int, int, int] = (205, 200, 190),
    blur_sigma: float | None = None,
) -> FaultedFrames:
    """Frames with one lens smudge from ``onset`` on (module docstring); deterministic in
    ``seed``. ``blur_sigma`` defaults to a quarter of the smudge's half-opacity minor radius."""
    from scipy.ndimage import gaussian_filter

    f = _check(frames, onset)
    h, w = f.shape[1:3]
    rng = np.random.default_rng(seed)
    a = smudge_opacity((h, w), area, rng)
    sigma = blur_sigma if blur_sigma is not None else max(1.0, np.sqrt(area * h * w / np.pi) / 4)
    out = f.copy()
    tint = np.asarray(haze, dtype=np.float64)
    for t in range(onset, len(f)):
        img = f[t].astype(np.float64)
        blurred = gaussian_filter(img, sigma=(sigma, sigma, 0), mode="nearest")
        smudged = (1.0 - veil) * blurred + veil * tint
        out[t] = np.clip(np.rint((1.0 - a[..., None]) * img + a[..., None] * smudged), 0, 255)
    mask = np.zeros(f.shape[:3], dtype=bool)
    mask[onset:] = a >= 0.5
    return FaultedFrames(out.astype(np.uint8), mask, onset)


def frozen_camera(frames: np.ndarray, onset: int) -> FaultedFrames:
    """Every frame from ``onset`` on is frame ``onset`` (a driver re-publishing its last image
    with fresh stamps)."""
    f = _check(frames, onset)
    out = f.copy()
    out[onset:] = f[onset]
    mask = np.zeros(f.shape[:3], dtype=bool)
    mask[onset:] = True
    return FaultedFrames(out, mask, onset)
