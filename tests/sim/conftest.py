"""Shared fixtures for the simulator tests: tiny episodes keep the whole suite fast."""

from __future__ import annotations

import pytest

from world_monitor.sim import SimConfig, TabletopEnv


@pytest.fixture(scope="session")
def nominal_env() -> TabletopEnv:
    """A second env (12 frames, 64x64) used to render counterfactual, shift-free views."""
    return TabletopEnv(SimConfig(image_size=64, episode_length=12))
