"""A small deterministic stand-in for the real Monitor (which is not needed to test plumbing).

Why: the session, replay and node only rely on :class:`~world_monitor.runtime.protocol.MonitorLike`.
The fake's risk is the mean brightness of the newest frame, so tests control risk with pixel
values: dark frames are "in distribution", bright frames are a "shift".
"""

from __future__ import annotations

import numpy as np

from world_monitor.runtime.types import Assessment, Decision


class FakeMonitor:
    """risk = mean brightness of the newest frame / 255; deterministic latency numbers."""

    def __init__(
        self,
        *,
        context_length: int = 2,
        horizon: int = 4,
        action_dim: int = 4,
        image_size: tuple[int, int] = (16, 16),
        slow_threshold: float = 0.5,
        stop_threshold: float = 0.7,
        fail: bool = False,
    ) -> None:
        self.context_length = context_length
        self.horizon = horizon
        self.action_dim = action_dim
        self.image_size = image_size
        self.slow_threshold = slow_threshold
        self.stop_threshold = stop_threshold
        self.backend_name = "fake"
        self.fail = fail
        self.calls: list[tuple[np.ndarray, np.ndarray, float]] = []

    def assess(self, frames, action_chunk, stamp, context_actions=None) -> Assessment:
        self.calls.append((frames.copy(), action_chunk.copy(), float(stamp)))
        if self.fail:
            raise RuntimeError("fake backend exploded")
        last = frames[-1].astype(np.float64)
        risk = float(last.mean() / 255.0)
        h, w = self.image_size
        # confidence low where the frame is bright, on a 4x4 latent grid
        small = last.mean(axis=2).reshape(4, h // 4, 4, w // 4).mean(axis=(1, 3)) / 255.0
        cmap = np.repeat((1.0 - small)[None, None], self.horizon, axis=0).astype(np.float32)
        ys, xs = np.nonzero(small > 0.5)
        box = None
        if ys.size:
            box = (xs.min() / 4, ys.min() / 4, (xs.max() + 1) / 4, (ys.max() + 1) / 4)
        decision = (
            Decision.STOP
            if risk >= self.stop_threshold
            else Decision.SLOW
            if risk >= self.slow_threshold
            else Decision.PROCEED
        )
        return Assessment(
            stamp=float(stamp),
            risk=risk,
            decision=decision,
            step_confidence=np.full(self.horizon, 1.0 - risk, np.float32),
            confidence_map=cmap,
            epsilon=0.1,
            box=box,
            onset_step=0 if box is not None else None,
            latency_ms={"encode": 1.0, "rollout": 2.0 + risk},
            backend=self.backend_name,
        )


def frame(value: int, hw: tuple[int, int] = (16, 16)) -> np.ndarray:
    return np.full((*hw, 3), value, np.uint8)


def chunk(horizon: int = 4, dim: int = 4) -> np.ndarray:
    return np.zeros((horizon, dim), np.float32)
