"""Decision points of a recorded episode: which frames and which planned chunk a monitor sees.

One definition shared by the rosbag2 exporter, calibration, evaluation and closed-loop runs, so a
replayed bag, a calibration pass and an evaluation pass all present the monitor with exactly the
same inputs for frame ``t``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from world_monitor.data.episode import Episode

__all__ = ["DecisionPoint", "decision_points", "planned_chunk"]


def planned_chunk(actions: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """The chunk planned at frame t: ``actions[t:t+horizon]``, the last action held past the end.

    A chunking policy always publishes ``horizon`` actions; a recorded episode only has actions
    up to its last frame, so the final chunks repeat the last action.
    """
    if len(actions) == 0:
        raise ValueError("planned_chunk: episode has no actions")
    idx = np.minimum(np.arange(t, t + horizon), len(actions) - 1)
    return actions[idx]


@dataclass(frozen=True)
class DecisionPoint:
    """Inputs of one monitor decision at frame ``t`` of an episode."""

    t: int
    frames: np.ndarray  # uint8 [k, H, W, 3], frames t-k+1 .. t
    chunk: np.ndarray  # float32 [horizon, A], actions t .. t+horizon-1
    context_actions: np.ndarray  # float32 [k-1, A], actions executed between the context frames


def decision_points(
    episode: Episode, context_length: int, horizon: int, stride: int = 1, start: int | None = None
) -> Iterator[DecisionPoint]:
    """Every ``stride``-th decision from the first frame with a full context (or ``start``)."""
    if context_length < 1 or horizon < 1 or stride < 1:
        raise ValueError("context_length, horizon and stride must be >= 1")
    first = context_length - 1 if start is None else max(start, context_length - 1)
    for t in range(first, episode.length, stride):
        yield DecisionPoint(
            t=t,
            frames=np.ascontiguousarray(episode.frames[t - context_length + 1 : t + 1]),
            chunk=planned_chunk(episode.actions, t, horizon).astype(np.float32, copy=False),
            context_actions=np.ascontiguousarray(
                episode.actions[t - context_length + 1 : t], dtype=np.float32
            ),
        )
