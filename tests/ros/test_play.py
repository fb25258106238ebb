"""`world-monitor play` on a real graph: real rclpy, real DDS on loopback (skipped without rclpy).

Bags are exported with the project's own exporter from the tiny synthetic world (10 frames at
10 Hz, stamps 0.0 .. 0.9 s). Each test subscribes from its own rclpy context in this process
(the player always makes its own context), waits for discovery through the player's
``wait_subscribers`` option, and checks what actually arrived on the graph.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from rosbags.rosbag2 import Writer  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from tiny_world import LENGTH, _episode  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from world_monitor.cli import main  # noqa: E402
from world_monitor.data.bag import export_episode_bag  # noqa: E402
from world_monitor.data.episode import Episode  # noqa: E402
from world_monitor.ros.play import PlayOptions, play_bag  # noqa: E402

IMAGE, ACTION, META = "/camera/image_raw", "/policy/action_chunk", "/world_monitor/episode_meta"
SPAN_S = 0.9  # bag time from the first to the last frame
WAIT_S = 20.0  # generous discovery / delivery timeouts: outcome must not depend on load
NS = 1_000_000_000


@pytest.fixture(scope="module", autouse=True)
def _loopback_dds() -> Iterator[None]:
    """DDS stays on loopback (set before any rclpy.init here). tests/conftest.py already sets
    these and the session's domain id at import; this only guarantees them if this module is
    ever run without it, and keeps the session's domain id when there is one."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ROS_LOCALHOST_ONLY", "1")
    mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    mp.delenv("ROS_STATIC_PEERS", raising=False)
    if not os.environ.get("ROS_DOMAIN_ID"):
        mp.setenv("ROS_DOMAIN_ID", str(os.getpid() % 100 + 100))
    yield
    mp.undo()


def _export(root: Path, name: str, offset_s: float = 0.0, storage: str = "mcap") -> Path:
    ep = _episode(0)
    ep = Episode(frames=ep.frames, actions=ep.actions, stamps=ep.stamps + offset_s, meta=ep.meta)
    return export_episode_bag(ep, root / name, horizon=3, storage=storage)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("play_bags")
    return {
        "mcap": _export(root, "zero"),
        "sqlite3": _export(root, "zero_db", storage="sqlite3"),
        "t100": _export(root, "t100", offset_s=100.0),
    }


class Graph:
    """Subscribers in their own context, spun by a background thread; records arrivals."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(
            "play_test_probe",
            context=self.context,
            parameter_overrides=[Parameter("use_sim_time", value=True)],
        )
        self.got: dict[str, list[tuple[float, Any]]] = {}
        self.subs: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.running:
            self.executor.spin_once(timeout_sec=0.05)

    def listen(self, msg_type: type, topic: str, qos: Any = None) -> None:
        self.got[topic] = []

        def cb(msg: Any) -> None:
            with self.lock:
                self.got[topic].append((time.monotonic(), msg))

        self.subs[topic] = self.node.create_subscription(
            msg_type, topic, cb, qos or QoSProfile(depth=100)
        )

    def ready(self, *topics: str) -> Callable[[], bool]:
        """Subscriber-side matching: each of these subscriptions sees a publisher (a best-effort
        subscription drops what arrives before that)."""
        return lambda: all(self.subs[t].get_publisher_count() >= 1 for t in topics)

    def messages(self, topic: str) -> list[Any]:
        with self.lock:
            return [m for _, m in self.got[topic]]

    def arrivals(self, topic: str) -> list[float]:
        with self.lock:
            return [t for t, _ in self.got[topic]]

    def wait_for(self, cond: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            time.sleep(0.02)
        return cond()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def graph() -> Iterator[Graph]:
    g = Graph()
    yield g
    g.close()


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


def _opts(**kw: Any) -> PlayOptions:
    kw.setdefault("progress", False)
    kw.setdefault("wait_timeout", WAIT_S)
    return PlayOptions(**kw)


def test_every_message_arrives_in_order_on_the_remapped_topic(
    graph: Graph, bags: dict[str, Path]
) -> None:
    graph.listen(Image, "/wm_test/image", qos_profile_sensor_data)  # like the monitor's camera
    graph.listen(Image, IMAGE)  # the original name must stay silent
    graph.listen(JointTrajectory, ACTION)
    graph.listen(String, META)
    report = play_bag(
        bags["mcap"],
        _opts(rate=4.0, remaps={IMAGE: "/wm_test/image"}, wait_subscribers=3),
        ready=graph.ready("/wm_test/image", ACTION, META),
    )
    assert report.subscribers_matched >= 3
    assert graph.wait_for(
        lambda: (
            len(graph.messages("/wm_test/image")) == LENGTH
            and len(graph.messages(ACTION)) == LENGTH
            and len(graph.messages(META)) == 1
        )
    ), {k: len(v) for k, v in graph.got.items()}
    ep = _episode(0)
    images = graph.messages("/wm_test/image")
    assert [_stamp_ns(m) for m in images] == [round(s * 1e9) for s in ep.stamps]  # recorded order
    for msg, frame in zip(images, ep.frames, strict=True):
        assert np.array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(frame.shape), frame)
    actions = graph.messages(ACTION)
    assert [_stamp_ns(m) for m in actions] == [_stamp_ns(m) for m in images]
    first_points = np.array([list(m.points[0].positions) for m in actions], np.float32)
    np.testing.assert_array_equal(first_points, ep.actions)
    assert '"world_monitor.episode_meta"' in graph.messages(META)[0].data
    time.sleep(0.2)
    assert graph.messages(IMAGE) == []
    assert report.topics[IMAGE].published_as == "/wm_test/image"
    assert {t: r.published for t, r in report.topics.items()} == {
        IMAGE: LENGTH,
        ACTION: LENGTH,
        META: 1,
    }
    assert report.published_total == 2 * LENGTH + 1 and not report.interrupted


def test_rate_scales_the_recorded_timing(graph: Graph, bags: dict[str, Path]) -> None:
    graph.listen(Image, IMAGE, qos_profile_sensor_data)
    rate = 4.0
    report = play_bag(
        bags["mcap"], _opts(rate=rate, topics=[IMAGE], wait_subscribers=1), ready=graph.ready(IMAGE)
    )
    assert graph.wait_for(lambda: len(graph.messages(IMAGE)) == LENGTH)
    expected = SPAN_S / rate  # 0.225 s
    # the player never publishes early: a hard lower bound, independent of load
    assert report.wall_s >= expected - 1e-3
    arrivals = graph.arrivals(IMAGE)
    span = arrivals[-1] - arrivals[0]
    # delivery jitter can shorten the span a little; rate 1.5 or slower would give >= 0.6 s
    assert expected - 0.05 <= span < 0.6, span
    gaps = np.diff(arrivals)
    assert gaps.min() > 0.1 / rate / 3, gaps  # paced, not a burst
    assert report.bag_s == pytest.approx(SPAN_S, abs=1e-6)
    assert 1.5 < report.achieved_rate <= rate + 0.05


def test_restamp_moves_headers_to_now_keeping_relative_timing(
    graph: Graph, bags: dict[str, Path]
) -> None:
    graph.listen(Image, IMAGE, qos_profile_sensor_data)
    graph.listen(JointTrajectory, ACTION)
    rate = 2.0
    before = time.time_ns()
    report = play_bag(
        bags["mcap"],
        _opts(rate=rate, restamp=True, topics=[IMAGE, ACTION], wait_subscribers=2),
        ready=graph.ready(IMAGE, ACTION),
    )
    after = time.time_ns()
    assert graph.wait_for(
        lambda: len(graph.messages(IMAGE)) == LENGTH and len(graph.messages(ACTION)) == LENGTH
    )
    stamps = np.array([_stamp_ns(m) for m in graph.messages(IMAGE)], dtype=np.int64)
    assert stamps[0] != 0
    assert before <= stamps[0] and stamps[-1] <= after  # "now" during the playback
    # spacing of the recording (0.1 s) divided by the rate, to the nanosecond
    assert np.abs(np.diff(stamps) - round(0.1 / rate * 1e9)).max() <= 1
    # a frame and the chunk planned on it keep equal stamps
    assert [_stamp_ns(m) for m in graph.messages(ACTION)] == stamps.tolist()
    assert report.topics[IMAGE].restamped == LENGTH
    assert report.first_stamp_ns == stamps[0]


def test_clock_publishes_the_bag_time_for_use_sim_time_nodes(
    graph: Graph, bags: dict[str, Path]
) -> None:
    graph.listen(Clock, "/clock")
    graph.listen(Image, IMAGE, qos_profile_sensor_data)
    hz, rate = 50.0, 2.0
    report = play_bag(
        bags["t100"],
        _opts(rate=rate, clock_hz=hz, topics=[IMAGE], wait_subscribers=1),
        ready=graph.ready(IMAGE, "/clock"),
    )
    assert graph.wait_for(lambda: len(graph.messages("/clock")) == report.clock_published)
    times = [m.clock.sec + m.clock.nanosec * 1e-9 for m in graph.messages("/clock")]
    assert times[0] == pytest.approx(100.0, abs=0.03)
    assert times[-1] == pytest.approx(100.0 + SPAN_S, abs=1e-6)  # ends at the bag's end
    assert all(b >= a for a, b in zip(times, times[1:], strict=False))
    # ~hz ticks per wall second over SPAN_S / rate s, plus the start and end ticks
    assert hz * SPAN_S / rate * 0.5 <= len(times) <= hz * SPAN_S / rate + 3
    assert graph.wait_for(
        lambda: abs(graph.node.get_clock().now().nanoseconds * 1e-9 - (100.0 + SPAN_S)) < 1e-6
    ), graph.node.get_clock().now()
    # header stamps are left as recorded (no --restamp): on the same time line as /clock
    assert _stamp_ns(graph.messages(IMAGE)[0]) == 100 * NS


def test_topics_and_start_offset_select_messages_from_sqlite3(
    graph: Graph, bags: dict[str, Path]
) -> None:
    graph.listen(Image, IMAGE, qos_profile_sensor_data)
    graph.listen(JointTrajectory, ACTION)
    report = play_bag(
        bags["sqlite3"],
        _opts(rate=4.0, topics=[ACTION], start_offset=0.45, wait_subscribers=1),
        ready=graph.ready(ACTION),
    )
    assert graph.wait_for(lambda: len(graph.messages(ACTION)) == 5)
    assert [_stamp_ns(m) for m in graph.messages(ACTION)] == [
        round(t * 1e9) for t in (0.5, 0.6, 0.7, 0.8, 0.9)
    ]
    time.sleep(0.2)
    assert graph.messages(IMAGE) == []
    assert set(report.topics) == {ACTION}
    assert report.published_total == 5


def test_loop_continues_the_restamped_time_line(graph: Graph, bags: dict[str, Path]) -> None:
    graph.listen(Image, IMAGE, qos_profile_sensor_data)
    report = play_bag(
        bags["mcap"],
        _opts(rate=4.0, loops=2, restamp=True, topics=[IMAGE], wait_subscribers=1),
        ready=graph.ready(IMAGE),
    )
    assert graph.wait_for(lambda: len(graph.messages(IMAGE)) == 2 * LENGTH), [
        _stamp_ns(m) for m in graph.messages(IMAGE)
    ]
    stamps = np.array([_stamp_ns(m) for m in graph.messages(IMAGE)])
    assert (np.diff(stamps) > 0).all()  # never jumps back at the seam
    assert report.loops_completed == 2 and report.topics[IMAGE].published == 2 * LENGTH


def _custom_bag(path: Path) -> Path:
    """A bag with one topic of a message package that is not installed and one std_msgs one."""
    store = get_typestore(Stores.ROS2_JAZZY)  # a fresh store: the project's cached one stays clean
    store.register(get_types_from_msg("int32 value", "wm_play_test_msgs/msg/Counter"))
    counter, string = (
        store.types["wm_play_test_msgs/msg/Counter"],
        store.types["std_msgs/msg/String"],
    )
    with Writer(path, version=9) as writer:
        c1 = writer.add_connection("/custom", "wm_play_test_msgs/msg/Counter", typestore=store)
        c2 = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        for i in range(3):
            t = (i + 1) * 50_000_000
            writer.write(c1, t, store.serialize_cdr(counter(value=i), c1.msgtype))
            writer.write(c2, t, store.serialize_cdr(string(data=f"hi {i}"), c2.msgtype))
    return path


def test_cli_skips_topics_whose_message_package_is_missing(
    graph: Graph, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = _custom_bag(tmp_path / "custom")
    graph.listen(String, "/chatter")
    rc = main(["play", str(bag), "--no-progress", "--wait-subscribers", "1", "--rate", "4"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert graph.wait_for(lambda: len(graph.messages("/chatter")) == 3)
    assert [m.data for m in graph.messages("/chatter")] == ["hi 0", "hi 1", "hi 2"]
    skipped = [line for line in out.splitlines() if "skipped /custom" in line]
    assert len(skipped) == 1 and "wm_play_test_msgs" in skipped[0] and "not importable" in out
    assert "/chatter [std_msgs/msg/String]: 3 published" in out
    assert "3 message(s) of skipped topics not published" in out


def _corrupt(bags: dict[str, Path], tmp_path: Path) -> Path:
    bad = tmp_path / "corrupt"
    shutil.copytree(bags["mcap"], bad)
    mcap = next(bad.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    return bad


@pytest.mark.parametrize(
    "case",
    ["missing", "corrupt", "unknown_topic", "bad_remap", "unknown_remap", "bad_rate", "offset"],
)
def test_bad_input_is_one_line_and_exit_2(
    case: str, bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = str(bags["mcap"])
    argv = {
        "missing": [str(tmp_path / "nope")],
        "corrupt": [str(_corrupt(bags, tmp_path))],
        "unknown_topic": [bag, "--topics", f"{IMAGE},/not_there"],
        "bad_remap": [bag, "--remap", "/camera/image_raw=/x"],
        "unknown_remap": [bag, "--remap", "/not_there:=/x"],
        "bad_rate": [bag, "--rate", "-1"],
        "offset": [bag, "--start-offset", "5"],
    }[case]
    rc = main(["play", *argv, "--no-progress"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith("world-monitor play: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    expected = {
        "missing": "does not exist",
        "corrupt": "cannot open bag",
        "unknown_topic": "/not_there",
        "bad_remap": "expected /from:=/to",
        "unknown_remap": "/not_there",
        "bad_rate": "--rate",
        "offset": "past the end",
    }[case]
    assert expected in lines[0]


def test_without_ros_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, bags: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import world_monitor.ros

    monkeypatch.setitem(sys.modules, "rclpy", None)  # `import rclpy` raises ImportError
    monkeypatch.delitem(sys.modules, "world_monitor.ros.play")
    monkeypatch.delattr(world_monitor.ros, "play")
    rc = main(["play", str(bags["mcap"]), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "bash scripts/setup.sh" in err[0] and "rclpy" in err[0], err


def test_sigint_stops_cleanly_with_a_summary_and_exit_130(
    graph: Graph, bags: dict[str, Path]
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "world_monitor.cli",
            "play",
            str(bags["mcap"]),
            "--loop",
            "--no-progress",
            "--topics",
            IMAGE,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),  # the loopback settings of this module
    )
    try:
        # the player installs its signal handlers before it creates its publishers
        assert graph.wait_for(lambda: graph.node.count_publishers(IMAGE) >= 1), "no player"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    first = out.splitlines()[0]
    assert first.startswith("played ") and first.endswith("interrupted"), out
