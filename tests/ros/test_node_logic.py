"""world_monitor_node's logic without ROS 2, against the stand-in in ``rclpy_stub.py``.

What this covers: configure/activate/deactivate, fail-fast configuration, lock heartbeat
closed before the first decision, decisions on the worker thread, relay (forward / scale /
block), undecodable images, diagnostics fallback, and "closing lock is the last lock message".
What it does not: the rclpy API itself (tests/ros/test_node.py on a ROS 2 install).
"""

from __future__ import annotations

import importlib
import sys
import time

import pytest
import rclpy_stub
from fakes import FakeMonitor

HW = (16, 16)


@pytest.fixture
def stub(monkeypatch):
    import world_monitor.ros as ros_pkg

    previous = sys.modules.pop("world_monitor.ros.node", None)
    rclpy_stub.install(monkeypatch)
    node_mod = importlib.import_module("world_monitor.ros.node")
    yield node_mod
    # never leave the stub-bound module behind for tests that use the real rclpy
    sys.modules.pop("world_monitor.ros.node", None)
    if hasattr(ros_pkg, "node"):
        delattr(ros_pkg, "node")
    if previous is not None:
        sys.modules["world_monitor.ros.node"] = previous
        ros_pkg.node = previous


def _node(node_mod, **params):
    params.setdefault("bundle_path", "fake")
    overrides = [rclpy_stub.Parameter(k, value=v) for k, v in params.items()]
    return node_mod.WorldMonitorNode(
        monitor_factory=lambda p, cfg: FakeMonitor(horizon=1, image_size=HW),
        parameter_overrides=overrides,
    )


def _feed(node, value, wait_for=None):
    node.clock.t += 0.1
    ns = round(node.clock.t * 1e9)
    header = rclpy_stub.Header(stamp=rclpy_stub.Time(sec=ns // 10**9, nanosec=ns % 10**9))
    header.frame_id = "cam"
    img = rclpy_stub.MESSAGES["sensor_msgs.msg"]["Image"](
        header=header,
        height=HW[0],
        width=HW[1],
        encoding="rgb8",
        step=HW[1] * 3,
        data=bytes([value]) * (HW[0] * HW[1] * 3),
    )
    traj = rclpy_stub.MESSAGES["trajectory_msgs.msg"]
    chunk = traj["JointTrajectory"](
        header=header,
        joint_names=["a", "b", "c", "d"],
        points=[traj["JointTrajectoryPoint"](positions=[0.0] * 4)],
    )
    n = len(node.pubs["~/lock"].sent)
    node.subs["image"][1](img)
    node.subs["action_chunk"][1](chunk)
    end = time.monotonic() + 10.0  # the worker publishes the decision's lock
    while len(node.pubs["~/lock"].sent) == n and time.monotonic() < end:
        time.sleep(0.005)
    heartbeat = node._timers[0]
    heartbeat.cb()


def _twist(x=1.0):
    geo = rclpy_stub.MESSAGES["geometry_msgs.msg"]
    return geo["Twist"](linear=geo["Vector3"](x=x), angular=geo["Vector3"]())


def _locks(node):
    return [m.data for m in node.pubs["~/lock"].sent]


def test_lifecycle_heartbeat_relay_and_closing_lock(stub):
    node = _node(stub, relay_enabled=True)
    try:
        assert node.state == "active"
        assert set(node.subs) == {"image", "action_chunk", "cmd_in"}
        assert node.subs["image"][2] == "sensor_data"
        assert _locks(node) == [True]  # closed before any decision
        node.subs["cmd_in"][1](_twist())
        assert node.pubs["cmd_out"].sent == [] and node.relay_counts["blocked"] == 1

        for _ in range(4):
            _feed(node, 20)
        assert _locks(node)[-1] is False
        heat = node.pubs["~/heatmap"].sent
        assert heat and heat[-1].header.frame_id == "cam" and heat[-1].encoding == "rgb8"
        node.subs["cmd_in"][1](_twist())
        assert node.pubs["cmd_out"].sent[-1].linear.x == 1.0

        _feed(node, 140)  # risk 0.55: SLOW -> Twist scaled
        node.subs["cmd_in"][1](_twist())
        assert node.pubs["cmd_out"].sent[-1].linear.x == pytest.approx(0.5)

        _feed(node, 240)  # risk 0.94: STOP -> blocked
        assert _locks(node)[-1] is True
        n = len(node.pubs["cmd_out"].sent)
        node.subs["cmd_in"][1](_twist())
        assert len(node.pubs["cmd_out"].sent) == n

        node.trigger_deactivate()
        assert _locks(node)[-1] is True and node.subs == {}
        count = len(_locks(node))
        node._heartbeat()
        assert len(_locks(node)) == count  # nothing after the closing lock
    finally:
        node.close()


def test_bad_image_encoding_closes_and_is_counted(stub):
    node = _node(stub)
    try:
        for _ in range(4):
            _feed(node, 20)
        header = rclpy_stub.Header(stamp=rclpy_stub.Time(sec=int(node.clock.t) + 1, nanosec=0))
        img = rclpy_stub.MESSAGES["sensor_msgs.msg"]["Image"](
            header=header,
            height=HW[0],
            width=HW[1],
            encoding="16UC1",
            step=HW[1] * 2,
            data=bytes(HW[0] * HW[1] * 2),
        )
        node.subs["image"][1](img)
        status = node.session.status()
        assert status.lock and "invalid_image" in [r.value for r in status.reasons]
        assert node.session.accounting.to_dict()["image"]["rejected"] == {"invalid_image": 1}
        node._diag_timer.cb()
        diag = node.pubs["/diagnostics"].sent[-1].status[0]
        assert diag.level == b"\x02" and "invalid_image" in diag.message
    finally:
        node.close()


def test_shadow_mode_never_locks(stub):
    node = _node(stub, shadow_mode=True)
    try:
        _feed(node, 240)
        _feed(node, 240)
        assert node.session.status().decision.name == "STOP"
        assert _locks(node)[-1] is False
    finally:
        node.close()


def test_configure_fails_fast_on_bad_parameters(stub):
    node = _node(stub, bundle_path="", slow_scale=2.0)
    assert node.state == "unconfigured" and node.session is None
    errors = [line for line in node.logger.lines if line.startswith("ERROR")]
    assert any("bundle_path" in e for e in errors) and any("slow_scale" in e for e in errors)
    assert "bundle_path" in node.configure_error


def test_configure_fails_when_monitor_cannot_load(stub):
    def boom(params, cfg):
        raise FileNotFoundError("bundle /nope not found")

    node = stub.WorldMonitorNode(
        monitor_factory=boom,
        parameter_overrides=[rclpy_stub.Parameter("bundle_path", value="/nope")],
    )
    assert node.state == "unconfigured" and node.session is None
    assert any("/nope" in line for line in node.logger.lines)


@pytest.mark.parametrize(
    ("params", "expect"),
    [
        ({}, (None, ())),  # nothing named: every SLOW makes the motion evidence stale
        ({"slow_action_dims": [0, 2]}, (None, ())),  # no relay: SLOW's effect unknown
        ({"slow_action_dims": [0, 2], "relay_enabled": True, "slow_scale": 0.3}, (0.3, (0, 2))),
        (
            {"slow_action_dims": [1], "relay_enabled": True, "relay_msg_type": "JointTrajectory"},
            (1.0, (1,)),  # forwarded unchanged on SLOW
        ),
    ],
)
def test_session_knows_what_slow_does_to_the_chunk(stub, params, expect):
    node = _node(stub, **params)
    cfg = node.session.config
    assert (cfg.slow_action_scale, cfg.slow_action_dims) == expect


def test_slow_action_dims_beyond_the_chunk_fail_configure(stub):
    node = _node(stub, slow_action_dims=[7], relay_enabled=True)
    assert node.session is None and "slow_action_dims" in node.configure_error
