"""The Episode contract: one recorded or simulated robot episode.

Every part of world_monitor (simulator, datasets, rosbag2 I/O, training, the monitor) exchanges
episodes through this one type, so its invariants are checked in one place. Validation raises
:class:`EpisodeError` naming the offending field, because a bad recording must be rejected with a
message a robot engineer can act on, never a bare numpy traceback deep inside training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Episode", "EpisodeError", "EpisodeMeta"]


class EpisodeError(ValueError):
    """An episode (or one of its fields) violates the contract; the message names the field."""


@dataclass
class EpisodeMeta:
    """Descriptive metadata of an episode.

    ``shift`` is ``None`` for in-distribution episodes. ``shift_onset`` is the first frame index
    at which the shift is active (0 when present from the start, ``None`` without a shift).
    ``failure_step`` is the first frame index at which the task is known to have failed
    (``None`` for successful episodes).
    """

    scenario: str
    seed: int
    fps: float
    success: bool
    shift: str | None = None
    severity: float | None = None
    shift_onset: int | None = None
    failure_step: int | None = None
    failure_reason: str | None = None
    policy: str = "scripted"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeMeta:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise EpisodeError(f"meta: unknown keys {sorted(unknown)}")
        missing = {"scenario", "seed", "fps", "success"} - set(data)
        if missing:
            raise EpisodeError(f"meta: missing keys {sorted(missing)}")
        return cls(**data)


@dataclass
class Episode:
    """One episode: ``frames uint8[T,H,W,3]``, ``actions float32[T,A]``, ``stamps float64[T]``.

    ``actions[t]`` is the action executed between frame ``t`` and frame ``t+1`` (end-effector
    position delta + gripper for the built-in simulator). ``shift_mask[t]`` marks the pixels where
    a distribution shift is visible in frame ``t`` (ground truth for localisation).
    """

    frames: np.ndarray
    actions: np.ndarray
    stamps: np.ndarray
    meta: EpisodeMeta
    shift_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def length(self) -> int:
        return int(self.frames.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def validate(self) -> None:
        """Check shapes, dtypes, finiteness and stamp order; raise EpisodeError naming the field."""
        f = self.frames
        if not isinstance(f, np.ndarray):
            raise EpisodeError(f"frames: expected numpy array, got {type(f).__name__}")
        if f.dtype != np.uint8:
            raise EpisodeError(f"frames: expected dtype uint8, got {f.dtype}")
        if f.ndim != 4 or f.shape[-1] != 3:
            raise EpisodeError(f"frames: expected shape [T,H,W,3], got {list(f.shape)}")
        t = f.shape[0]
        if t < 1:
            raise EpisodeError("frames: episode has no frames")
        a = self.actions
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise EpisodeError(f"actions: expected float32 numpy array, got {got}")
        if a.ndim != 2 or a.shape[0] != t:
            raise EpisodeError(f"actions: expected shape [T={t},A], got {list(a.shape)}")
        if not np.isfinite(a).all():
            bad = int(np.argwhere(~np.isfinite(a))[0, 0])
            raise EpisodeError(f"actions: non-finite value (NaN/Inf) at step {bad}")
        s = self.stamps
        if not isinstance(s, np.ndarray) or s.dtype != np.float64:
            got = s.dtype if isinstance(s, np.ndarray) else type(s).__name__
            raise EpisodeError(f"stamps: expected float64 numpy array, got {got}")
        if s.shape != (t,):
            raise EpisodeError(f"stamps: expected shape [{t}], got {list(s.shape)}")
        if not np.isfinite(s).all():
            raise EpisodeError("stamps: non-finite value (NaN/Inf)")
        if t > 1 and not (np.diff(s) > 0).all():
            bad = int(np.argwhere(np.diff(s) <= 0)[0, 0]) + 1
            raise EpisodeError(f"stamps: not strictly increasing at index {bad}")
        if self.shift_mask is not None:
            m = self.shift_mask
            if not isinstance(m, np.ndarray) or m.dtype != np.bool_:
                raise EpisodeError("shift_mask: expected bool numpy array")
            if m.shape != f.shape[:3]:
                raise EpisodeError(
                    f"shift_mask: expected shape {list(f.shape[:3])}, got {list(m.shape)}"
                )
        if not isinstance(self.meta, EpisodeMeta):
            raise EpisodeError(f"meta: expected EpisodeMeta, got {type(self.meta).__name__}")
        if not (math.isfinite(self.meta.fps) and self.meta.fps > 0):
            raise EpisodeError(f"meta.fps: expected a positive number, got {self.meta.fps}")
        for name in ("failure_step", "shift_onset"):
            value = getattr(self.meta, name)
            if value is not None and not 0 <= value < t:
                raise EpisodeError(f"meta.{name}: {value} outside [0, {t})")

    def equals(self, other: Episode) -> bool:
        """Exact equality of arrays and metadata (used by round-trip tests)."""
        if self.meta != other.meta:
            return False
        if (self.shift_mask is None) != (other.shift_mask is None):
            return False
        same = (
            np.array_equal(self.frames, other.frames)
            and np.array_equal(self.actions, other.actions)
            and np.array_equal(self.stamps, other.stamps)
        )
        if self.shift_mask is not None:
            same = same and np.array_equal(self.shift_mask, other.shift_mask)
        return bool(same)
