"""Bag-replay launch test in the style of nav2's collision_monitor test (needs a full ROS 2).

Not collected by pytest (pytest.ini blocks the launch_testing plugin, which breaks pytest 9):
run it on a full ROS 2 install with ``launch_test tests/ros/launch_bag_replay.py``. The same
scenario runs in the pytest suite on the wheel-installed rclpy, played with
``world-monitor play`` (tests/ros/test_graph_bundle.py).

A shift episode (dark frames, then bright frames from ``ONSET``) is exported as a rosbag2 and
played with ``ros2 bag play --clock`` into world_monitor_node (the real node; the model is the
brightness fake from ``fakes.py``), on sim time. Asserts: the lock opens during the
in-distribution part and engages within ``BOUND_S`` seconds of bag time after the onset.
"""

from __future__ import annotations

import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

import launch  # noqa: E402
from world_monitor.data.bag import export_episode_bag  # noqa: E402
from world_monitor.data.episode import Episode, EpisodeMeta  # noqa: E402

HERE = Path(__file__).resolve().parent
FPS, LENGTH, ONSET, T0 = 10.0, 60, 30, 100.0
ONSET_TIME = T0 + ONSET / FPS
BOUND_S = 1.0  # lock must engage within this much bag time after the onset
TIMEOUT_S = 30.0  # wall-clock limit for the whole scenario


def _shift_bag(root: Path) -> Path:
    frames = np.full((LENGTH, 16, 16, 3), 20, np.uint8)
    frames[ONSET:] = 240
    meta = EpisodeMeta(
        scenario="launch_test",
        seed=0,
        fps=FPS,
        success=False,
        shift="brightness",
        severity=1.0,
        shift_onset=ONSET,
    )
    episode = Episode(
        frames=frames,
        actions=np.zeros((LENGTH, 4), np.float32),
        stamps=T0 + np.arange(LENGTH, dtype=np.float64) / FPS,
        meta=meta,
    )
    return export_episode_bag(episode, root / "shift_bag", horizon=1)


@pytest.mark.launch_test
def generate_test_description():
    bag = _shift_bag(Path(tempfile.mkdtemp(prefix="world_monitor_launch_")))
    node = launch.actions.ExecuteProcess(
        cmd=[
            sys.executable,
            str(HERE / "fake_monitor_node.py"),
            "--ros-args",
            "-r",
            "__node:=world_monitor",
            "-p",
            "bundle_path:=fake",
            "-p",
            "use_sim_time:=true",
            "-r",
            "image:=/camera/image_raw",
            "-r",
            "action_chunk:=/policy/action_chunk",
        ],
        output="screen",
    )
    play = launch.actions.ExecuteProcess(
        cmd=["ros2", "bag", "play", str(bag), "--clock"], output="screen"
    )
    return launch.LaunchDescription(
        [
            node,
            launch.actions.TimerAction(period=3.0, actions=[play]),
            launch_testing.actions.ReadyToTest(),
        ]
    ), {"node": node, "play": play}


class TestLockEngagesOnShift(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()

    @classmethod
    def tearDownClass(cls):
        rclpy.shutdown()

    def test_lock_engages_within_bound(self):
        probe = rclpy.create_node("world_monitor_launch_probe")
        sim = {"now": None}
        events: list[tuple[float | None, bool]] = []
        probe.create_subscription(
            Clock, "/clock", lambda m: sim.update(now=m.clock.sec + m.clock.nanosec * 1e-9), 10
        )
        probe.create_subscription(
            Bool, "/world_monitor/lock", lambda m: events.append((sim["now"], m.data)), 10
        )
        try:
            end = time.monotonic() + TIMEOUT_S
            engaged_at = None
            while time.monotonic() < end and engaged_at is None:
                rclpy.spin_once(probe, timeout_sec=0.1)
                opened = [t for t, lock in events if not lock and t is not None]
                if opened:
                    engaged_at = next(
                        (t for t, lock in events if lock and t is not None and t > opened[0]),
                        None,
                    )
            self.assertTrue(events, "no lock heartbeat received")
            self.assertTrue(any(not lock for _, lock in events), "lock never opened")
            self.assertIsNotNone(engaged_at, "lock did not engage after the shift")
            self.assertGreaterEqual(engaged_at, ONSET_TIME - 1.0 / FPS)
            self.assertLessEqual(engaged_at, ONSET_TIME + BOUND_S)
        finally:
            probe.destroy_node()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_node_exit_code(self, proc_info, node):
        launch_testing.asserts.assertExitCodes(
            proc_info, allowable_exit_codes=[0, -2, -15], process=node
        )
