"""world_monitor_node with the fake monitor (``python fake_monitor_node.py --ros-args ...``): the
real node class and the real ``main`` (executor, signal handling, exit codes), only the model is
a stand-in. Used by the SIGINT test and the launch test."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import FakeMonitor  # noqa: E402

from world_monitor.ros.node import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv, monitor_factory=lambda p, cfg: FakeMonitor(horizon=1))
