"""Test-wide settings: one torch thread, offscreen rendering, deterministic seeds.

Tests share 2 CPU cores with nothing else in CI; one thread is faster than two under contention
(measured, see shared docs) and keeps results reproducible.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def _loopback_only_ros() -> None:
    """DDS stays on loopback, on a domain of this test session's own (non-negotiable).

    Set here, at conftest import, before any test imports rclpy, and inherited by every
    subprocess a test starts (node processes, `world-monitor play`, colcon). Overridden
    unconditionally: the developer's shell must not decide where test traffic goes. The domain
    id comes from the process id so two sessions on one machine (parallel CI jobs) do not
    cross-talk; 1-100 keeps clear of 0 (the default domain a real robot may be on).
    """
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    # ROS logs and the node's engine cache ($ROS_HOME/world_monitor/engines) stay out of ~/.ros
    ros_home = tempfile.mkdtemp(prefix="world_monitor_test_ros_home_")
    atexit.register(shutil.rmtree, ros_home, True)
    os.environ["ROS_HOME"] = ros_home


_loopback_only_ros()
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
