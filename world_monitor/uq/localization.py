"""Where and when: boxes and onset steps from confidence maps, scored DeepTraceReward-style.

Why: every alert carries a box and an onset step (method.md §5, "ours"); in simulation the
ground-truth region (``shift_mask``) and onset of each shift are known, so localisation is scored
with DeepTraceReward's metrics: box IoU in frame-ratio coordinates, centre distance, onset-time
distance as % of the episode length, and ``(Acc + Explanation + IoU + (100 − TimeDist)) / 4``.

Box convention: ``(x0, y0, x1, y1)`` normalised to [0, 1] by the image width/height, ``x`` =
column, ``y`` = row, ``x1``/``y1`` exclusive (a box covering the whole image is (0, 0, 1, 1)).
A latent cell ``j`` covers pixels ``[j·s, (j+1)·s)`` for VAE stride ``s``, so in normalised
coordinates a latent box maps to ``j·s / W``; when the image is exactly ``s`` times the latent
this equals ``j / w``, and giving ``image_size`` handles padded / cropped encoders.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

__all__ = [
    "Box",
    "LocalizationScore",
    "box_center_distance",
    "box_from_confidence",
    "box_from_mask",
    "box_iou",
    "box_to_pixels",
    "onset_step",
    "onset_time_distance",
    "overall_score",
    "score_localization",
]

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _to_numpy(x: object) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(x)


def _largest_component_box(
    mask: np.ndarray, score: np.ndarray | None = None
) -> tuple[int, int, int, int] | None:
    """Bounding slice (r0, c0, r1, c1) of the largest 8-connected component of ``mask``.

    Ties on size go to the component with the lowest mean ``score`` (most confidently wrong),
    then to the first in scan order, so the result is deterministic.
    """
    labels, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, idx)
    best = np.flatnonzero(sizes == sizes.max())
    if best.size > 1 and score is not None:
        means = ndimage.mean(score, labels, idx[best])
        best = best[[int(np.argmin(means))]]
    sl = ndimage.find_objects(labels)[int(idx[best[0]]) - 1]
    return sl[0].start, sl[1].start, sl[0].stop, sl[1].stop


def _normalise(
    rc: tuple[int, int, int, int],
    hw: tuple[int, int],
    stride: int,
    image_size: tuple[int, int] | None,
) -> Box:
    r0, c0, r1, c1 = rc
    h, w = hw
    img_h, img_w = image_size if image_size is not None else (h * stride, w * stride)
    return (
        min(1.0, c0 * stride / img_w),
        min(1.0, r0 * stride / img_h),
        min(1.0, c1 * stride / img_w),
        min(1.0, r1 * stride / img_h),
    )


def box_from_confidence(
    confidence: object,
    threshold: float,
    *,
    reduce: Literal["mean", "min"] = "mean",
    stride: int = 1,
    image_size: tuple[int, int] | None = None,
) -> Box | None:
    """Box around the largest low-confidence region of a latent confidence map.

    Accepts ``[h, w]``, ``[C, h, w]`` or a whole rollout ``[H, C, h, w]``. Channels are reduced
    first (``mean``: a region most channels doubt; ``min``: any doubting channel); for a rollout
    the minimum over steps is taken so a region that fails at any step is kept. Cells with
    ``confidence < threshold`` form the region. Returns None when no cell is below it.
    """
    q = _to_numpy(confidence).astype(np.float64)
    if q.ndim not in (2, 3, 4):
        raise ValueError(f"confidence map must be [h, w], [C, h, w] or [H, C, h, w], got {q.shape}")
    if q.ndim >= 3:
        q = q.mean(axis=-3) if reduce == "mean" else q.min(axis=-3)
    if q.ndim == 3:
        q = q.min(axis=0)
    rc = _largest_component_box(q < threshold, score=q)
    return None if rc is None else _normalise(rc, q.shape, stride, image_size)


def box_from_mask(mask: object, largest_component: bool = False) -> Box | None:
    """Ground-truth box of a pixel mask ``[H, W]`` (bounding box of all True pixels by default)."""
    m = _to_numpy(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    if not m.any():
        return None
    if largest_component:
        rc = _largest_component_box(m)
    else:
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        rc = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return _normalise(rc, m.shape, 1, None)  # type: ignore[arg-type]


def box_to_pixels(box: Box, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Normalised box → integer pixel box (x0, y0, x1, y1), x1/y1 exclusive."""
    h, w = image_size
    x0, y0, x1, y1 = box
    return (
        math.floor(x0 * w),
        math.floor(y0 * h),
        math.ceil(x1 * w),
        math.ceil(y1 * h),
    )


def onset_step(
    confidence: object, threshold: float, direction: Literal["below", "above"] = "below"
) -> int | None:
    """First step whose value crosses ``threshold``.

    ``direction="below"`` for confidence (first step with ``q < threshold``); ``"above"`` for a
    risk (first step with ``risk > threshold``). None if it never crosses.
    """
    v = _to_numpy(confidence).astype(np.float64).reshape(-1)
    hits = np.flatnonzero(v < threshold if direction == "below" else v > threshold)
    return int(hits[0]) if hits.size else None


def _box_area(r: Box) -> float:
    return max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two normalised boxes (0 when either is missing or empty)."""
    if a is None or b is None:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _box_area(a) + _box_area(b) - inter
    return float(inter / union) if union > 0 else 0.0


def box_center_distance(a: Box | None, b: Box | None) -> float:
    """Euclidean distance between box centres in normalised coordinates (√2 when one is missing)."""
    if a is None or b is None:
        return math.sqrt(2.0)
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    return float(math.hypot(ca[0] - cb[0], ca[1] - cb[1]))


def onset_time_distance(pred: int | None, true: int, episode_length: int) -> float:
    """``100·|pred − true| / episode_length``, capped at 100 (100 when no onset was predicted)."""
    if episode_length <= 0:
        raise ValueError(f"episode_length must be positive, got {episode_length}")
    if pred is None:
        return 100.0
    return float(min(100.0, 100.0 * abs(pred - true) / episode_length))


def overall_score(
    accuracy: float, iou: float, time_distance: float, explanation: float | None = None
) -> float:
    """DeepTraceReward overall score, all terms in percent: ``(Acc + Expl + IoU + (100 − TD)) / 4``.

    The monitor produces no text explanation; with ``explanation=None`` the score is the mean of
    the three remaining terms (so it stays on the same 0–100 scale).
    """
    terms = [accuracy, iou, 100.0 - time_distance]
    if explanation is not None:
        terms.append(explanation)
    return float(sum(terms) / len(terms))


@dataclass
class LocalizationScore:
    """Aggregated localisation metrics over a set of shifted episodes (percent where noted)."""

    n: int
    accuracy: float  # % of episodes detected
    iou: float  # mean IoU ×100
    center_distance: float  # mean, normalised units
    time_distance: float  # mean, % of episode length
    overall: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def score_localization(
    detected: Sequence[bool],
    pred_boxes: Sequence[Box | None],
    true_boxes: Sequence[Box | None],
    pred_onsets: Sequence[int | None],
    true_onsets: Sequence[int],
    episode_lengths: Sequence[int],
) -> LocalizationScore:
    """Score a set of shifted episodes; undetected episodes count as IoU 0 / time distance 100."""
    n = len(detected)
    if not all(
        len(x) == n for x in (pred_boxes, true_boxes, pred_onsets, true_onsets, episode_lengths)
    ):
        raise ValueError("score_localization: inputs differ in length")
    if n == 0:
        raise ValueError("score_localization: no episodes")
    ious, cds, tds = [], [], []
    for det, pb, tb, po, to, length in zip(
        detected, pred_boxes, true_boxes, pred_onsets, true_onsets, episode_lengths, strict=True
    ):
        ious.append(box_iou(pb, tb) if det else 0.0)
        cds.append(box_center_distance(pb if det else None, tb))
        tds.append(onset_time_distance(po if det else None, to, length))
    acc = 100.0 * float(np.mean(np.asarray(detected, dtype=float)))
    iou = 100.0 * float(np.mean(ious))
    td = float(np.mean(tds))
    return LocalizationScore(
        n=n,
        accuracy=acc,
        iou=iou,
        center_distance=float(np.mean(cds)),
        time_distance=td,
        overall=overall_score(acc, iou, td),
    )
