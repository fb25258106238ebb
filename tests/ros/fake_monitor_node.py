"""world_monitor_node with the fake monitor, for the launch test (``python fake_monitor_node.py
--ros-args ...``): the real node class, parameters and topics, only the model is a stand-in."""

from __future__ import annotations

import sys
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import FakeMonitor  # noqa: E402

from world_monitor.ros.node import WorldMonitorNode  # noqa: E402


def main() -> None:
    rclpy.init(args=sys.argv)
    node = WorldMonitorNode(monitor_factory=lambda p, cfg: FakeMonitor(horizon=1))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
