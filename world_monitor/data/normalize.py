"""Action normalisation statistics and frame <-> float conversion.

Why: the world model sees actions on a common scale (end-effector deltas are millimetres, the
gripper is 0/1), and the statistics must be computed on the *train* split only and shipped with
the monitor bundle so that deployment uses exactly the numbers training used. They are stored as
plain JSON (readable, diffable, no pickle).

Frames: uint8 [0, 255] <-> float32 [-1, 1] via ``x / 127.5 - 1``; the inverse rounds, so
``float_to_frames(frames_to_float(f)) == f`` exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from world_monitor.data.dataset import EpisodeDataset

__all__ = ["ActionNormalizer", "float_to_frames", "frames_to_float"]

log = logging.getLogger(__name__)

NORMALIZER_FORMAT = "world_monitor.action_normalizer"
_EPS = 1e-6


def frames_to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] in [0, 255] -> float32 in [-1, 1] (the VAE's input range)."""
    if frames.dtype != np.uint8:
        raise TypeError(f"frames: expected uint8, got {frames.dtype}")
    return frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def float_to_frames(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8 [0, 255]; values outside the range are clipped, then rounded."""
    y = (np.asarray(x, dtype=np.float32) + np.float32(1.0)) * np.float32(127.5)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


@dataclass
class ActionNormalizer:
    """Per-dimension affine action normalisation ``(a - offset) / scale``.

    ``mode="standard"``: offset = mean, scale = std. ``mode="minmax"``: maps [min, max] to
    [-1, 1]. Dimensions that are (nearly) constant on the train split get scale 1 so that they
    are shifted, never blown up by a division by ~0.
    """

    mode: Literal["standard", "minmax"]
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    count: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def offset(self) -> np.ndarray:
        if self.mode == "standard":
            return self.mean
        return (self.max + self.min) / 2

    @property
    def scale(self) -> np.ndarray:
        s = self.std if self.mode == "standard" else (self.max - self.min) / 2
        return np.where(s > _EPS, s, 1.0).astype(np.float32)

    @classmethod
    def fit(
        cls, actions: np.ndarray | Iterable[np.ndarray], mode: str = "standard"
    ) -> ActionNormalizer:
        """Statistics over all rows of ``actions`` (one [T, A] array or an iterable of them).

        Streams over the iterable (float64 running sums) so the train split never has to fit in
        memory at once.
        """
        if mode not in ("standard", "minmax"):
            raise ValueError(f"mode: expected 'standard' or 'minmax', got {mode!r}")
        chunks = [actions] if isinstance(actions, np.ndarray) else actions
        n, s, ss, lo, hi = 0, None, None, None, None
        for a in chunks:
            a = np.asarray(a, dtype=np.float64)
            if a.ndim != 2:
                raise ValueError(f"actions: expected [T, A], got shape {list(a.shape)}")
            if not np.isfinite(a).all():
                raise ValueError("actions: contain NaN/Inf")
            if s is None:
                s, ss = a.sum(0), (a * a).sum(0)
                lo, hi = a.min(0), a.max(0)
            else:
                if a.shape[1] != s.shape[0]:
                    raise ValueError(f"actions: dimension {a.shape[1]} != {s.shape[0]}")
                s, ss = s + a.sum(0), ss + (a * a).sum(0)
                lo, hi = np.minimum(lo, a.min(0)), np.maximum(hi, a.max(0))
            n += a.shape[0]
        if n == 0 or s is None:
            raise ValueError("actions: no rows to compute statistics from")
        mean = s / n
        std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
        f32 = np.float32
        return cls(mode, mean.astype(f32), std.astype(f32), lo.astype(f32), hi.astype(f32), n)  # type: ignore[arg-type]

    @classmethod
    def from_dataset(
        cls, dataset: EpisodeDataset, *, split: str = "train", mode: str = "standard"
    ) -> ActionNormalizer:
        """Fit on the actions of one split (in-distribution train by default)."""
        sub = dataset.select(split=split)
        if len(sub) == 0:
            raise ValueError(f"dataset {dataset.root}: split {split!r} is empty")
        return cls.fit((ep.actions for ep in sub), mode=mode)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float32)
        if a.shape[-1] != self.dim:
            raise ValueError(f"actions: last dimension {a.shape[-1]} != normalizer dim {self.dim}")
        return ((a - self.offset) / self.scale).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.dim:
            raise ValueError(f"input: last dimension {x.shape[-1]} != normalizer dim {self.dim}")
        return (x * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": NORMALIZER_FORMAT,
            "version": 1,
            "mode": self.mode,
            "count": self.count,
            **{k: getattr(self, k).tolist() for k in ("mean", "std", "min", "max")},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActionNormalizer:
        if d.get("format") != NORMALIZER_FORMAT or d.get("version") != 1:
            raise ValueError(f"not a version-1 {NORMALIZER_FORMAT} document")
        try:
            arrs = {k: np.asarray(d[k], dtype=np.float32) for k in ("mean", "std", "min", "max")}
            return cls(mode=d["mode"], count=int(d["count"]), **arrs)
        except KeyError as exc:
            raise ValueError(f"action normalizer: missing field {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ActionNormalizer:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: cannot load action normalizer: {exc}") from None
