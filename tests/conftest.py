"""Test-wide settings: one torch thread, offscreen rendering, deterministic seeds.

Tests share 2 CPU cores with nothing else in CI; one thread is faster than two under contention
(measured, see shared docs) and keeps results reproducible.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _single_thread_and_seed() -> None:
    try:
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(0)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    np.random.seed(0)
