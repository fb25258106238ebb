"""Fixtures for replay tests: synthetic episodes -> rosbag2 bags, and the fake monitor.

Frames are uniform grey; the fake monitor's risk is their brightness / 255, so a "shift"
episode is one whose frames turn bright at ``onset``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from world_monitor.data.bag import export_episode_bag
from world_monitor.data.episode import Episode, EpisodeMeta


def _load_fakes():
    name = "world_monitor_test_fakes"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "ros" / "fakes.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fakes = _load_fakes()

HW = (16, 16)
FPS = 10.0


def make_episode(length: int = 20, onset: int | None = None, action_dim: int = 4) -> Episode:
    """Dark frames (risk ~0.1); from ``onset`` on, bright frames (risk ~0.9)."""
    frames = np.full((length, *HW, 3), 25, np.uint8)
    if onset is not None:
        frames[onset:] = 230
    actions = np.tile(np.linspace(-0.1, 0.1, action_dim, dtype=np.float32), (length, 1))
    stamps = 100.0 + np.arange(length, dtype=np.float64) / FPS
    meta = EpisodeMeta(
        scenario="synthetic",
        seed=0,
        fps=FPS,
        success=onset is None,
        shift=None if onset is None else "brightness",
        severity=None if onset is None else 1.0,
        shift_onset=onset,
    )
    return Episode(frames=frames, actions=actions, stamps=stamps, meta=meta)


@pytest.fixture
def fake_monitor():
    """Factory: a fresh fake monitor (horizon 1 so exported chunks are never truncated)."""

    def make(**kw):
        kw.setdefault("horizon", 1)
        kw.setdefault("image_size", HW)
        return fakes.FakeMonitor(**kw)

    return make


@pytest.fixture
def make_bag(tmp_path):
    """Factory: export an episode as a bag under tmp_path; returns the bag directory."""
    counter = iter(range(1000))

    def make(episode: Episode | None = None, name: str | None = None, **kw) -> Path:
        kw.setdefault("horizon", 1)
        path = tmp_path / (name or f"bag{next(counter)}")
        return export_episode_bag(episode if episode is not None else make_episode(), path, **kw)

    return make
