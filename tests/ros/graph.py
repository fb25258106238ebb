"""A live ROS 2 graph for tests: the real node, a probe node, real DDS on loopback.

Why a harness: every real-graph test needs the same things — the node spun by the executor its
``main`` uses, a probe that publishes camera frames / chunks / commands and records every output
with its arrival time, and a bounded wait. The probe has an executor and thread of its own, as a
consumer in another process would: a slow callback in the node must not delay the recording of
its outputs (that would hide or fake a late lock). The loopback-only DDS environment and the per-session domain id are
set by ``tests/conftest.py`` before rclpy is imported.
"""

from __future__ import annotations

import array
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32, Float32MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from world_monitor.ros.node import WorldMonitorNode, make_executor


class Recorder:
    """Thread-safe list of ``(arrival monotonic time, message)`` per output topic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: dict[str, list[tuple[float, Any]]] = {}

    def callback(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self._lock:
                self.items.setdefault(name, []).append((time.monotonic(), msg))

        return record

    def get(self, name: str) -> list[tuple[float, Any]]:
        with self._lock:
            return list(self.items.get(name, []))

    def values(self, name: str) -> list[Any]:
        return [m.data for _, m in self.get(name)]

    def clear(self) -> None:
        with self._lock:
            self.items.clear()


class Probe:
    """Publishers a test drives the node with (camera, chunks, relay input) on ``node``."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.pub_image = node.create_publisher(Image, "/image", 10)
        self.pub_traj = node.create_publisher(JointTrajectory, "/action_chunk", 10)
        self.pub_array = node.create_publisher(Float32MultiArray, "/action_array", 10)
        self.pub_cmd = node.create_publisher(Twist, "/cmd_in", 10)

    def now(self) -> Any:
        return self.node.get_clock().now().to_msg()

    def publish_image(
        self,
        rgb: np.ndarray,
        *,
        encoding: str = "rgb8",
        stamp: Any = None,
        data: bytes | None = None,
    ) -> None:
        msg = Image()
        msg.header.stamp = self.now() if stamp is None else stamp
        msg.header.frame_id = "camera"
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        ch = 1 if rgb.ndim == 2 else int(rgb.shape[2])
        msg.height, msg.width, msg.encoding, msg.step = h, w, encoding, w * ch
        msg.data = array.array("B", np.ascontiguousarray(rgb).tobytes() if data is None else data)
        self.pub_image.publish(msg)

    def publish_chunk(
        self, chunk: np.ndarray, *, stamp: Any = None, field: str = "positions"
    ) -> None:
        msg = JointTrajectory()
        msg.header.stamp = self.now() if stamp is None else stamp
        msg.joint_names = [f"a{i}" for i in range(chunk.shape[1])]
        msg.points = [JointTrajectoryPoint(**{field: [float(v) for v in row]}) for row in chunk]
        self.pub_traj.publish(msg)

    def publish_array_chunk(self, chunk: np.ndarray) -> None:
        msg = Float32MultiArray()
        msg.layout.dim = [
            MultiArrayDimension(label="horizon", size=chunk.shape[0], stride=chunk.size),
            MultiArrayDimension(label="action", size=chunk.shape[1], stride=chunk.shape[1]),
        ]
        msg.data = array.array("f", chunk.astype(np.float32).ravel().tolist())
        self.pub_array.publish(msg)


class Graph(Probe):
    """The node under test and a probe, spun in a background thread; ``close()`` tears down."""

    def __init__(
        self,
        monitor_factory: Callable[[dict[str, Any], Any], Any] | None,
        params: dict[str, Any],
        *,
        name: str = "world_monitor",
        executor: Any = None,
    ) -> None:
        self.node_under_test = WorldMonitorNode(
            name,
            monitor_factory=monitor_factory,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.probe = rclpy.create_node("world_monitor_test_probe")
        super().__init__(self.probe)
        self.rec = Recorder()
        ns = f"/{name}"
        self.probe.create_subscription(Bool, f"{ns}/lock", self.rec.callback("lock"), 50)
        self.probe.create_subscription(Float32, f"{ns}/risk", self.rec.callback("risk"), 50)
        self.probe.create_subscription(Image, f"{ns}/heatmap", self.rec.callback("heatmap"), 50)
        self.probe.create_subscription(
            DiagnosticArray, "/diagnostics", self.rec.callback("diagnostics"), 50
        )
        self.probe.create_subscription(Twist, "/cmd_out", self.rec.callback("cmd_out"), 50)
        self.executor = make_executor() if executor is None else executor
        self.executor.add_node(self.node_under_test)
        self.probe_executor = SingleThreadedExecutor()
        self.probe_executor.add_node(self.probe)
        self._threads = [
            threading.Thread(target=self._spin, args=(ex,), daemon=True)
            for ex in (self.executor, self.probe_executor)
        ]
        for t in self._threads:
            t.start()

    @property
    def wm(self) -> WorldMonitorNode:
        return self.node_under_test

    @staticmethod
    def _spin(executor: Any) -> None:
        with contextlib.suppress(Exception):  # shut down under us at close()
            executor.spin()

    def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0) -> bool:
        return wait_for(cond, timeout)

    def wait_matched(self, timeout: float = 10.0) -> bool:
        """Discovery: the node's subscriptions see the probe's publishers and vice versa."""
        return self.wait_for(
            lambda: (
                self.pub_image.get_subscription_count() > 0
                and self.pub_traj.get_subscription_count() > 0
                and self.probe.count_publishers(f"/{self.wm.get_name()}/lock") > 0
            ),
            timeout,
        )

    def diagnostics(self, since: float = float("-inf")) -> list[dict[str, str]]:
        """Every world_monitor status received at or after ``since`` (monotonic) as a dict of
        its key values (+ level, message)."""
        out = []
        for t, arr in self.rec.get("diagnostics"):
            if t < since:
                continue
            for st in arr.status:
                if st.name.startswith("world_monitor"):
                    d = {kv.key: kv.value for kv in st.values}
                    d["_level"] = str(st.level[0] if isinstance(st.level, bytes) else st.level)
                    d["_message"] = st.message
                    out.append(d)
        return out

    def decision_log(self) -> list[str]:
        """``decision (reasons)`` of every received diagnostics status, for failure messages:
        a lock that closed on a slow machine (stale input) reads differently from one that
        closed on risk."""
        return [f"{d.get('decision')} ({d.get('reasons')})" for d in self.diagnostics()]

    def close(self) -> None:
        self.wm.close()
        for ex in (self.executor, self.probe_executor):
            ex.shutdown(timeout_sec=2.0)
        for t in self._threads:
            t.join(timeout=5.0)
        self.probe.destroy_node()
        self.wm.destroy_node()


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``cond`` every 20 ms until true or ``timeout`` seconds passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def gaps(times: list[float]) -> np.ndarray:
    return np.diff(np.asarray(times, dtype=np.float64))
