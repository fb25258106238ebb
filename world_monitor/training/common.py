"""Small pieces shared by the training stages: metrics log, learning-rate schedule, timers.

Why separate: the VAE and dynamics stages are different loops but must log, schedule and time
themselves the same way so that ``metrics.jsonl`` reads as one record of the run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["MetricsLog", "Stopwatch", "TrainingError", "lr_at", "set_lr"]

logger = logging.getLogger(__name__)


class TrainingError(ValueError):
    """A user-fixable problem with the data or config of a training / evaluation run."""


class MetricsLog:
    """Append-only JSON-lines log (one object per line, ``stage`` and ``step`` in each)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, stage: str, step: int, values: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        row = {"stage": stage, "step": int(step), "time": round(time.time(), 3)}
        for k, v in values.items():
            row[k] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, allow_nan=True) + "\n")


def lr_at(step: int, *, base: float, warmup: int, total: int, final_fraction: float = 0.1) -> float:
    """Linear warm-up then cosine decay to ``final_fraction * base``.

    A pure function of the step (no scheduler object), so a resumed run uses exactly the learning
    rate the uninterrupted run would have.
    """
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return base * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class Stopwatch:
    """Wall-clock seconds per named stage (reported at the end of training)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stages: dict[str, float] = {}

    def record(self, name: str, t0: float) -> float:
        dt = time.perf_counter() - t0
        self.stages[name] = self.stages.get(name, 0.0) + dt
        logger.info("stage %s: %.1f s", name, dt)
        return dt

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start
