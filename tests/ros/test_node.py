"""world_monitor_node with a fake monitor (needs a ROS 2 install; skipped without rclpy)."""

from __future__ import annotations

import array
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from fakes import FakeMonitor  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool, Float32  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from world_monitor.ros.node import WorldMonitorNode  # noqa: E402

HW = (16, 16)


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture
def setup(ros):
    params = {"bundle_path": "fake", "relay_enabled": True, "heartbeat_rate_hz": 20.0}
    node = WorldMonitorNode(
        monitor_factory=lambda p, cfg: FakeMonitor(horizon=1, image_size=HW),
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )
    probe = rclpy.create_node("world_monitor_probe")
    got: dict[str, list] = {"lock": [], "risk": [], "cmd_out": []}
    probe.create_subscription(Bool, "/world_monitor/lock", lambda m: got["lock"].append(m.data), 10)
    probe.create_subscription(
        Float32, "/world_monitor/risk", lambda m: got["risk"].append(m.data), 10
    )
    probe.create_subscription(Twist, "/cmd_out", lambda m: got["cmd_out"].append(m), 10)
    pubs = {
        "image": probe.create_publisher(Image, "/image", 10),
        "actions": probe.create_publisher(JointTrajectory, "/action_chunk", 10),
        "cmd_in": probe.create_publisher(Twist, "/cmd_in", 10),
    }
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    yield node, probe, executor, got, pubs
    node.close()
    executor.shutdown()
    probe.destroy_node()
    node.destroy_node()


def _spin_until(executor, cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        executor.spin_once(timeout_sec=0.05)
    return cond()


def _feed(node, pubs, value):
    stamp: Time = node.get_clock().now().to_msg()
    img = Image()
    img.header.stamp = stamp
    img.header.frame_id = "camera"
    img.height, img.width, img.encoding, img.step = HW[0], HW[1], "rgb8", HW[1] * 3
    img.data = array.array("B", bytes([value]) * (HW[0] * HW[1] * 3))
    pubs["image"].publish(img)
    chunk = JointTrajectory()
    chunk.header.stamp = stamp
    chunk.joint_names = ["a", "b", "c", "d"]
    chunk.points = [JointTrajectoryPoint(positions=[0.0, 0.0, 0.0, 0.0])]
    pubs["actions"].publish(chunk)


def test_node_starts_active_and_heartbeat_is_locked_before_first_decision(setup):
    node, probe, executor, got, pubs = setup
    assert node.session is not None
    assert _spin_until(executor, lambda: len(got["lock"]) >= 3)
    assert all(got["lock"])  # fail closed: no decision yet


def test_relay_blocks_on_stop_and_forwards_when_open(setup):
    node, probe, executor, got, pubs = setup
    for _ in range(3):
        pubs["cmd_in"].publish(Twist())
        executor.spin_once(timeout_sec=0.05)
    _spin_until(executor, lambda: False, timeout=0.3)
    assert got["cmd_out"] == [] and node.relay_counts["blocked"] >= 1

    def fed_until(value, cond, rounds=40):
        for _ in range(rounds):
            _feed(node, pubs, value)
            if _spin_until(executor, cond, timeout=0.1):
                return True
        return False

    assert fed_until(20, lambda: bool(got["lock"]) and got["lock"][-1] is False)
    pubs["cmd_in"].publish(Twist())
    assert _spin_until(executor, lambda: len(got["cmd_out"]) >= 1)
    assert got["risk"] and min(got["risk"]) < 0.5

    assert fed_until(240, lambda: got["lock"][-1] is True)  # bright frames: risk_high -> STOP
    n = len(got["cmd_out"])
    pubs["cmd_in"].publish(Twist())
    _spin_until(executor, lambda: False, timeout=0.3)
    assert len(got["cmd_out"]) == n


def test_deactivate_publishes_closed_lock(setup):
    node, probe, executor, got, pubs = setup
    _spin_until(executor, lambda: len(got["lock"]) >= 1)
    node.trigger_deactivate()
    count = len(got["lock"])
    assert _spin_until(executor, lambda: len(got["lock"]) > count)
    assert got["lock"][-1] is True


def test_missing_bundle_fails_configure(ros):
    node = WorldMonitorNode(parameter_overrides=[Parameter("bundle_path", value="")])
    try:
        assert node.session is None  # configure failed: nothing loaded, nothing published
    finally:
        node.close()
        node.destroy_node()
