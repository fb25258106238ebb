"""The interface every consumer (ROS node, replay, evaluation, benchmarks) needs from a monitor.

Kept as a Protocol so the session/replay/node code can be tested with a small fake and so that
the real :class:`world_monitor.runtime.monitor.Monitor` (model + backend + risk + localisation)
can evolve without touching its consumers.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from world_monitor.runtime.types import Assessment

__all__ = ["MonitorLike"]


@runtime_checkable
class MonitorLike(Protocol):
    """A monitor assesses one decision: context frames + the action chunk about to execute.

    ``assess`` returns an :class:`Assessment` whose ``risk`` is in [0, 1] and whose ``decision``
    is the *model's* decision from the calibrated thresholds (no hysteresis, no watchdog: the
    :class:`~world_monitor.runtime.gate.Gate` adds those). It may raise on a backend fault; the
    caller turns that into a closed gate with ``Reason.backend_error``.
    """

    #: Number of context frames the model reads (k), the action horizon (H), action dim (A).
    context_length: int
    horizon: int
    action_dim: int
    #: (height, width) of the frames the model expects.
    image_size: tuple[int, int]
    #: Thresholds on risk for SLOW and STOP, from the bundle's calibration.
    slow_threshold: float
    stop_threshold: float
    #: Name of the inference backend that actually loaded (e.g. "onnxruntime:CPUExecutionProvider").
    backend_name: str

    def assess(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        stamp: float,
        context_actions: np.ndarray | None = None,
    ) -> Assessment:
        """frames uint8 [k,H,W,3] oldest first; action_chunk float32 [H,A] (raw, un-normalised);
        context_actions float32 [k,A] executed between the context frames, if known."""
        ...
