"""Latent confidence map → pixel heatmap, two ways.

(a) :func:`confidence_heatmap`: the channel-mean confidence upsampled (bilinear) to the image
    and coloured with a matplotlib colormap — cheap, for ROS ``~/heatmap`` and dashboards.
(b) :func:`decoder_heatmap`: the C³ paper's trick (method.md §1). Each latent element is blended
    between the latents of pure green, red and blue frames according to its confidence and the
    result is decoded by the same VAE, so the colours land where the decoder would put that
    element's content. The predicted frame is composited back where ``q > 0.75``.

Colour breakpoints (piecewise linear in q, weights sum to 1):

=============  =====  ===  ====
q              green  red  blue
=============  =====  ===  ====
q ≤ 0.35       1      0    0      confidently wrong
0.35 → 0.5     1→0    0→1  0
0.5            0      1    0      unsure
0.5 → 1.0      0      1→0  0→1
q ≥ 1.0        0      0    1      confidently right
=============  =====  ===  ====

Everything is a pure function of tensors and callables (``encode``/``decode``), so it works with
any VAE and any backend. Images are ``[..., 3, H, W]`` floats in ``value_range``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "COMPOSITE_THRESHOLD",
    "GREEN_UNTIL",
    "RED_AT",
    "color_latent",
    "color_weights",
    "confidence_heatmap",
    "decoder_heatmap",
    "pure_color_frames",
    "reference_latents",
    "to_uint8",
]

logger = logging.getLogger(__name__)

GREEN_UNTIL = 0.35
RED_AT = 0.5
BLUE_AT = 1.0
COMPOSITE_THRESHOLD = 0.75


def confidence_heatmap(
    confidence: Tensor | np.ndarray,
    image_size: tuple[int, int],
    cmap: str = "RdYlGn",
) -> np.ndarray:
    """``uint8 [H, W, 3]`` (or ``[N, H, W, 3]``) colour image of a ``[C, h, w]`` / ``[N, C, h, w]`` map.

    Default colormap ``RdYlGn``: red = low confidence, green = high, fixed to the range [0, 1]
    so colours mean the same across frames.
    """
    import matplotlib

    q = torch.as_tensor(confidence, dtype=torch.float32)
    single = q.ndim == 3
    if q.ndim == 2:
        q, single = q[None, None], True
    elif q.ndim == 3:
        q = q[None]
    if q.ndim != 4:
        raise ValueError(
            f"confidence must be [h, w], [C, h, w] or [N, C, h, w], got {tuple(q.shape)}"
        )
    mean = q.mean(dim=1, keepdim=True)
    up = F.interpolate(mean, size=tuple(image_size), mode="bilinear", align_corners=False)
    up = up.clamp(0.0, 1.0)[:, 0].numpy()
    rgb = matplotlib.colormaps[cmap](up)[..., :3]
    out = (rgb * 255.0 + 0.5).astype(np.uint8)
    return out[0] if single else out


def color_weights(q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(green, red, blue) blend weights per element (table in the module docstring)."""
    q = q.clamp(0.0, 1.0)
    to_red = ((q - GREEN_UNTIL) / (RED_AT - GREEN_UNTIL)).clamp(0.0, 1.0)
    to_blue = ((q - RED_AT) / (BLUE_AT - RED_AT)).clamp(0.0, 1.0)
    green = 1.0 - to_red
    blue = to_blue
    red = to_red - to_blue
    return green, red, blue


def color_latent(q: Tensor, green: Tensor, red: Tensor, blue: Tensor) -> Tensor:
    """Per-element blend of the reference latents; ``q`` is ``[..., C, h, w]``, references ``[C, h, w]``."""
    wg, wr, wb = color_weights(q)
    return wg * green + wr * red + wb * blue


def pure_color_frames(
    image_size: tuple[int, int], value_range: tuple[float, float] = (-1.0, 1.0)
) -> Tensor:
    """``[3, 3, H, W]`` pure green, red and blue frames (in that order) in ``value_range``."""
    lo, hi = value_range
    frames = torch.full((3, 3, *image_size), lo, dtype=torch.float32)
    for i, channel in enumerate((1, 0, 2)):  # green, red, blue → RGB channel index
        frames[i, channel] = hi
    return frames


def reference_latents(
    encode: Callable[[Tensor], Tensor],
    image_size: tuple[int, int],
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> tuple[Tensor, Tensor, Tensor]:
    """Latents of pure green, red, blue frames via ``encode([N, 3, H, W]) -> [N, C, h, w]``."""
    with torch.no_grad():
        lat = encode(pure_color_frames(image_size, value_range))
    return lat[0], lat[1], lat[2]


def decoder_heatmap(
    confidence: Tensor,
    references: tuple[Tensor, Tensor, Tensor],
    decode: Callable[[Tensor], Tensor],
    predicted_frame: Tensor | None = None,
    composite_threshold: float = COMPOSITE_THRESHOLD,
) -> Tensor:
    """The paper's heatmap: decode the colour-blended latent, composite the prediction where sure.

    ``confidence`` ``[C, h, w]`` or ``[N, C, h, w]``; ``decode([N, C, h, w]) -> [N, 3, H, W]``;
    ``predicted_frame`` (decoded prediction, same shape as the output) is pasted in the pixels
    whose latent cell has channel-mean ``q > composite_threshold`` (nearest upsampling, so each
    latent cell maps to its stride×stride block).
    """
    q = confidence.float()
    single = q.ndim == 3
    if single:
        q = q[None]
    if q.ndim != 4:
        raise ValueError(f"confidence must be [C, h, w] or [N, C, h, w], got {tuple(q.shape)}")
    green, red, blue = (r.to(q) for r in references)
    if green.shape != q.shape[1:]:
        raise ValueError(
            f"reference latents {tuple(green.shape)} do not match confidence {tuple(q.shape[1:])}"
        )
    with torch.no_grad():
        img = decode(color_latent(q, green, red, blue))
    if predicted_frame is not None:
        pred = predicted_frame.to(img)
        if single and pred.ndim == 3:
            pred = pred[None]
        if pred.shape != img.shape:
            raise ValueError(
                f"predicted_frame {tuple(pred.shape)} != decoded heatmap {tuple(img.shape)}"
            )
        sure = (q.mean(dim=1, keepdim=True) > composite_threshold).float()
        sure = F.interpolate(sure, size=img.shape[-2:], mode="nearest")
        img = sure * pred + (1.0 - sure) * img
    return img[0] if single else img


def to_uint8(images: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """``[..., 3, H, W]`` float images → ``uint8 [..., H, W, 3]`` for saving / publishing."""
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0.0, 1.0)
    return (x.movedim(-3, -1).numpy() * 255.0 + 0.5).astype(np.uint8)
