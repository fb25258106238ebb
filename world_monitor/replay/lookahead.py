"""Replay's look-ahead: find the coming decisions' inputs early, so their model passes run on
spare cores while the replay itself stays sequential.

Why a shadow session: which frames and which chunk a decision reads is decided by
:class:`~world_monitor.runtime.session.MonitorSession` (context spacing, rejected inputs, the
decision policy). Re-deriving that here would be a second implementation that could drift, so
the scout feeds the *same* decoded messages to a second session whose monitor only submits the
model pass it is asked for (:meth:`~world_monitor.runtime.monitor.Monitor.prefetch`) and answers
PROCEED. The real session later asks the real monitor for the decision; the monitor hands it the
prefetched pass of exactly those inputs (keyed by their digest) or computes it. A scout that
guesses wrong (its gate saw dummy assessments; it does not run the heartbeat) costs a cache
miss, never a different decision.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from world_monitor.runtime.session import MonitorSession, SessionConfig
from world_monitor.runtime.types import Assessment, Decision

__all__ = ["Scout", "ScoutMonitor"]


class ScoutMonitor:
    """A MonitorLike with the real monitor's contract whose ``assess`` only starts the pass."""

    def __init__(self, monitor: Any) -> None:
        self._monitor = monitor
        for name in (
            "context_length",
            "horizon",
            "action_dim",
            "image_size",
            "slow_threshold",
            "stop_threshold",
            "backend_name",
            "calibration",
            "action_range",
            "frame_period_s",
        ):
            if hasattr(monitor, name):
                setattr(self, name, getattr(monitor, name))
        self.submitted = 0

    def assess(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        stamp: float,
        context_actions: np.ndarray | None = None,
    ) -> Assessment:
        self._monitor.prefetch(frames, action_chunk, context_actions)
        self.submitted += 1
        return Assessment(stamp=float(stamp), risk=0.0, decision=Decision.PROCEED)


class Scout:
    """A shadow session fed the replay's decoded inputs ahead of the real one."""

    def __init__(self, monitor: Any, gate_config: Any, config: SessionConfig) -> None:
        self.monitor = ScoutMonitor(monitor)
        shadow = dataclasses.replace(config, keep_decisions=False, measure_wall_time=False)
        self.session = MonitorSession(self.monitor, gate_config, shadow)
        self.session.gate.log_transitions = False

    def decide_if_due(self, now: float) -> bool:
        """Run the shadow decision the real session will make at ``now``; True if one ran."""
        if self.session.decision_due(now):
            self.session.decide(now)
            return True
        return False
