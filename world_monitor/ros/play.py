"""Play a rosbag2 recording into a live ROS 2 graph: ``world-monitor play BAG``.

Why this exists: ROS 2 installed from pip wheels has no ``ros2 bag play`` (there are no wheels
for rosbag2 or ros2cli), yet the natural way to try the monitor node on a real graph is to feed
it a recorded episode. This module reads the bag with the pure-Python ``rosbags`` library (the
same reader the rest of the project uses, so sqlite3 and MCAP both work) and republishes every
message with rclpy, on its own topic, with the recording's timing.

How:

* One rclpy publisher per (output topic, message type); the message class is imported from its
  type name (``sensor_msgs/msg/Image`` -> ``sensor_msgs.msg.Image``). The recorded CDR bytes are
  published as they are (``Publisher.publish`` accepts serialized bytes), so playback costs no
  decoding and is byte-exact. Topics whose message package is not importable are skipped and
  reported, never a traceback.
* Timing follows the bag's *log* times: message ``i`` is published at wall time
  ``w0 + (log_i - t0) / rate``. The player never publishes early; when it falls behind (a slow
  machine, ``--rate`` too high) it publishes as fast as it can and reports the largest lag.
* ``restamp``: exported bags start at ``t = 0`` and a zero header stamp means "unset" in ROS, so a
  live node cannot use them as recorded. With ``restamp`` every message that has a top-level
  ``std_msgs/Header`` is deserialised, its ``header.stamp`` mapped onto the player's ROS clock
  with the same affine map as the timing (``now0 + (stamp - t0) / rate``; a zero stamp is
  taken as the message's log time) and serialised again. Messages recorded with equal stamps
  (a frame and the action chunk planned on it) keep equal stamps, offsets between header and
  log time are kept (scaled by the rate), and every loop continues the time line instead of
  jumping back.
* ``clock_hz``: publishes ``/clock`` (``rosgraph_msgs/Clock``) with the bag time being played
  (restamped when ``restamp`` is on, so /clock and headers share one time line), for nodes
  running with ``use_sim_time``. A ``/clock`` topic recorded in the bag is then not replayed.
* Publishers use reliable, volatile, keep-last 10 QoS by default (``qos="auto"``), which matches
  both reliable and best-effort (sensor-data) subscriptions such as the monitor's camera input;
  topics that were recorded from a transient-local publisher (``/tf_static``, latched maps) keep
  transient-local durability so late-joining subscribers still receive them.
* ``wait_subscribers``: before playing, wait until that many subscriptions are matched (summed
  over the played topics) so the first messages are not published into an empty graph. A
  publisher sees a match a moment before the subscriber side has matched the publisher, and a
  best-effort (sensor-data) subscriber drops what arrives in between, so playback then starts
  ``SETTLE_S`` later (plus ``delay``, like ``ros2 bag play --delay``).
* A stop event (set by SIGINT / SIGTERM when run from the main thread) ends playback between two
  messages; the report is returned with ``interrupted=True``.

The player creates its own rclpy :class:`~rclpy.context.Context` (no signal handlers of rclpy's
own), so it can run beside other nodes in the same process without touching their context.
"""

from __future__ import annotations

import importlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.exceptions import InvalidTopicNameException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.signals import SignalHandlerOptions
from rclpy.validate_full_topic_name import validate_full_topic_name

from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.scan import open_reader

__all__ = [
    "CLOCK_TOPIC",
    "QOS_CHOICES",
    "PlayError",
    "PlayOptions",
    "PlayReport",
    "TopicReport",
    "import_message_class",
    "parse_remap",
    "play_bag",
]

log = logging.getLogger(__name__)

CLOCK_TOPIC = "/clock"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
QOS_CHOICES = ("auto", "reliable", "sensor-data")
_DEPTH = 10
#: after the subscriber wait: time for the subscriber side of discovery to catch up
SETTLE_S = 0.25
_ACK_TIMEOUT_S = 2.0
_NS = 1_000_000_000


class PlayError(ValueError):
    """A play option is unusable (bad remap, unknown topic, bad rate); the message says which."""


@dataclass
class PlayOptions:
    """How to play a bag; every field has the CLI flag of the same name."""

    topics: Sequence[str] | None = None  # bag topic names to play (None: all)
    rate: float = 1.0  # playback speed factor (2 = twice as fast)
    loops: int = 1  # times to play the bag; 0 = until stopped
    start_offset: float = 0.0  # seconds of bag time to skip at the start
    remaps: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic
    qos: str = "auto"  # auto | reliable | sensor-data
    clock_hz: float | None = None  # publish /clock at this wall rate; None: no /clock
    restamp: bool = False  # rewrite header.stamp onto the player's clock
    wait_subscribers: int = 0  # matched subscriptions (summed over topics) to wait for
    wait_timeout: float = 10.0  # seconds to wait for them before playing anyway
    delay: float = 0.0  # seconds to wait before playing (after the subscriber wait)
    progress: bool = True  # tqdm progress bar on stderr
    node_name: str = "world_monitor_play"

    def validate(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise PlayError(f"--rate must be a positive number, got {self.rate}")
        if self.loops < 0:
            raise PlayError(f"--loop must be >= 0 (0 = forever), got {self.loops}")
        if not (math.isfinite(self.start_offset) and self.start_offset >= 0):
            raise PlayError(f"--start-offset must be >= 0 seconds, got {self.start_offset}")
        if self.qos not in QOS_CHOICES:
            raise PlayError(f"--qos {self.qos!r}: choose one of {', '.join(QOS_CHOICES)}")
        if self.clock_hz is not None and not (math.isfinite(self.clock_hz) and self.clock_hz > 0):
            raise PlayError(f"--clock must be a positive rate in Hz, got {self.clock_hz}")
        if self.wait_subscribers < 0:
            raise PlayError(f"--wait-subscribers must be >= 0, got {self.wait_subscribers}")
        if not (math.isfinite(self.wait_timeout) and self.wait_timeout >= 0):
            raise PlayError(f"--wait-timeout must be >= 0 seconds, got {self.wait_timeout}")
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise PlayError(f"--delay must be >= 0 seconds, got {self.delay}")


@dataclass
class TopicReport:
    """One bag topic: where it went and what happened to its messages."""

    topic: str  # topic in the bag
    published_as: str  # topic it was published on ("" when skipped)
    msgtype: str
    in_bag: int  # messages of this topic in the bag
    published: int = 0
    restamped: int = 0
    skipped: str | None = None  # why the topic was not played (None: played)


@dataclass
class PlayReport:
    """What a playback did; ``to_dict`` is JSON-ready."""

    bag: str
    topics: dict[str, TopicReport]  # bag topic -> report (played and skipped)
    published_total: int = 0
    skipped_messages: int = 0  # messages of skipped topics, times the loops started
    clock_published: int = 0
    loops_completed: int = 0
    interrupted: bool = False
    wall_s: float = 0.0  # from the first scheduled message to the last publication
    bag_s: float = 0.0  # bag time played (summed over loops)
    max_lag_s: float = 0.0  # worst delay of a publication behind its schedule
    subscribers_matched: int = 0  # after the discovery wait
    first_stamp_ns: int | None = None  # first published header stamp when restamping

    @property
    def achieved_rate(self) -> float:
        """Bag seconds played per wall second (compare with ``--rate``)."""
        return self.bag_s / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def messages_per_s(self) -> float:
        return self.published_total / self.wall_s if self.wall_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["achieved_rate"] = self.achieved_rate
        doc["messages_per_s"] = self.messages_per_s
        return doc


def parse_remap(text: str) -> tuple[str, str]:
    """``/from:=/to`` -> ``("/from", "/to")``; both must be valid fully-qualified topic names."""
    src, sep, dst = text.partition(":=")
    src, dst = src.strip(), dst.strip()
    if not sep or not src or not dst:
        raise PlayError(f"--remap {text!r}: expected /from:=/to")
    for name in (src, dst):
        try:
            validate_full_topic_name(name)
        except InvalidTopicNameException as exc:
            raise PlayError(
                f"--remap {text!r}: {name!r} is not a fully-qualified topic name "
                f"({str(exc).splitlines()[0]})"
            ) from None
    return src, dst


def import_message_class(msgtype: str) -> type:
    """The rclpy message class of a type name (``pkg/msg/Name``); ImportError says what to install.

    rosidl_runtime_py (which has ``get_message``) has no wheel, so this is importlib directly.
    """
    parts = msgtype.split("/")
    if len(parts) == 2:  # "pkg/Name", as some recorders write it
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise ImportError(f"{msgtype!r} is not a message type name (pkg/msg/Name)")
    pkg, _, name = parts
    try:
        module = importlib.import_module(f"{pkg}.msg")
    except ImportError as exc:
        wheel = "ros-jazzy-" + pkg.replace("_", "-")
        raise ImportError(
            f"message package {pkg!r} not importable ({exc}); pip install {wheel}?"
        ) from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ImportError(f"{pkg}.msg has no message {name!r} (older/newer {pkg}?)")
    return cls


def _has_header(cls: type) -> bool:
    fields = getattr(cls, "get_fields_and_field_types", lambda: {})()
    return fields.get("header") in ("std_msgs/Header", "std_msgs/msg/Header")


def _qos_for(connection: Any, choice: str) -> QoSProfile:
    if choice == "sensor-data":
        return qos_profile_sensor_data
    profile = QoSProfile(depth=_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
    if choice == "auto":
        offered = getattr(getattr(connection, "ext", None), "offered_qos_profiles", None) or []
        if any(getattr(q.durability, "name", "") == "TRANSIENT_LOCAL" for q in offered):
            profile.durability = DurabilityPolicy.TRANSIENT_LOCAL
    return profile


@dataclass
class _Output:
    """A played topic: its publisher and whether its messages are restamped."""

    publisher: Any
    cls: type
    restamp: bool
    report: TopicReport


class _StopOnSignals:
    """SIGINT/SIGTERM set ``stop`` instead of raising in the middle of a publish (main thread
    only; elsewhere the caller's own handling stays in place). Restores the old handlers."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.old: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        log.info("signal %d: stopping playback", signum)
        self.stop.set()

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


def _select(path: Path, reader: Any, options: PlayOptions) -> list[Any]:
    """The bag connections to play; unknown --topics / --remap sources are user errors."""
    topics = {c.topic for c in reader.connections}
    listing = ", ".join(sorted(topics)) or "none"
    if options.topics is not None:
        unknown = sorted(set(options.topics) - topics)
        if unknown:
            raise PlayError(f"--topics {unknown}: not in {path} (topics in the bag: {listing})")
    unknown = sorted(set(options.remaps) - topics)
    if unknown:
        raise PlayError(f"--remap of {unknown}: not in {path} (topics in the bag: {listing})")
    wanted = set(options.topics) if options.topics is not None else topics
    return [c for c in reader.connections if c.topic in wanted]


def play_bag(
    bag: str | Path,
    options: PlayOptions | None = None,
    *,
    stop: threading.Event | None = None,
    on_publish: Callable[[str, int], None] | None = None,
    ready: Callable[[], bool] | None = None,
) -> PlayReport:
    """Publish the messages of ``bag`` into the live graph with the recording's timing.

    ``stop`` ends playback early (also set by SIGINT/SIGTERM when called from the main thread);
    ``ready()``, when given, must also be true before playing (polled with the subscriber wait,
    same timeout): an embedding application or a test can check its subscriber-side matching;
    ``on_publish(topic, log_ns)`` is called after each publication (progress displays, tests).
    Raises :class:`BagError` (bag missing, unreadable, corrupt) and :class:`PlayError` (bad
    options) before anything is published; a bag that fails to read part-way raises
    :class:`BagError` naming the message index.
    """
    options = options or PlayOptions()
    options.validate()
    path = Path(bag)
    stop = stop or threading.Event()
    reader = open_reader(path)
    try:
        connections = _select(path, reader, options)
        start_ns = int(reader.start_time) if reader.message_count else 0
        # rosbags' end_time is one nanosecond *after* the last message
        end_ns = int(reader.end_time) - 1 if reader.message_count else 0
        t0 = start_ns + round(options.start_offset * _NS)
        if reader.message_count and t0 > end_ns:
            raise PlayError(
                f"--start-offset {options.start_offset} s is past the end of {path} "
                f"({(end_ns - start_ns) / _NS:.3f} s long)"
            )
        context = Context()
        rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            with _StopOnSignals(stop):
                return _play(
                    path,
                    reader,
                    connections,
                    options,
                    context,
                    t0,
                    end_ns,
                    stop,
                    on_publish,
                    ready,
                )
        finally:
            rclpy.shutdown(context=context, uninstall_handlers=False)
    finally:
        reader.close()


def _play(
    path: Path,
    reader: Any,
    connections: list[Any],
    options: PlayOptions,
    context: Context,
    t0: int,
    end_ns: int,
    stop: threading.Event,
    on_publish: Callable[[str, int], None] | None,
    ready: Callable[[], bool] | None,
) -> PlayReport:
    node = Node(options.node_name, context=context, start_parameter_services=False)
    try:
        outputs, report = _make_outputs(path, node, connections, options)
        clock_pub = clock_cls = None
        if options.clock_hz is not None:
            clock_cls = import_message_class(CLOCK_TYPE)
            clock_pub = node.create_publisher(
                clock_cls, CLOCK_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
            )
            if t0 == 0 and not options.restamp:
                log.warning(
                    "%s starts at t=0 and a zero stamp means 'unset' in ROS: the node rejects "
                    "the first frame (invalid_stamp); add --restamp to start headers at now",
                    path,
                )
        report.subscribers_matched = _wait_for_subscribers(outputs, options, stop, ready)
        _run(
            reader,
            outputs,
            report,
            options,
            node,
            clock_pub,
            clock_cls,
            t0,
            end_ns,
            stop,
            on_publish,
        )
        # reliable publishers: let the last messages reach their subscribers before exiting
        deadline = time.monotonic() + _ACK_TIMEOUT_S
        for pub in {id(o.publisher): o.publisher for o in outputs.values()}.values():
            pub.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
        return report
    finally:
        node.destroy_node()


def _make_outputs(
    path: Path, node: Node, connections: list[Any], options: PlayOptions
) -> tuple[dict[int, _Output], PlayReport]:
    """A publisher per (output topic, type); unplayable topics get a skip reason instead."""
    reports: dict[str, TopicReport] = {}
    outputs: dict[int, _Output] = {}
    publishers: dict[tuple[str, str], Any] = {}
    for conn in connections:
        rep = reports.get(conn.topic)
        if rep is None:
            rep = reports[conn.topic] = TopicReport(conn.topic, "", conn.msgtype, 0)
        rep.in_bag += int(conn.msgcount)
        target = options.remaps.get(conn.topic, conn.topic)
        if options.clock_hz is not None and target == CLOCK_TOPIC:
            rep.skipped = "replaced by --clock"
            continue
        try:
            cls = import_message_class(conn.msgtype)
        except ImportError as exc:
            rep.skipped = str(exc)
            log.warning("%s: skipping %s [%s]: %s", path, conn.topic, conn.msgtype, exc)
            continue
        key = (target, conn.msgtype)
        if key not in publishers:
            try:
                publishers[key] = node.create_publisher(cls, target, _qos_for(conn, options.qos))
            except Exception as exc:  # noqa: BLE001 -- typesupport / rmw failures vary by type
                rep.skipped = f"cannot create a publisher: {type(exc).__name__}: {exc}"
                log.warning("%s: skipping %s: %s", path, conn.topic, rep.skipped)
                continue
        pub = publishers[key]
        rep.published_as = pub.topic_name
        rep.skipped = None
        outputs[conn.id] = _Output(pub, cls, options.restamp and _has_header(cls), rep)
    return outputs, PlayReport(bag=str(path), topics=reports)


def _wait_for_subscribers(
    outputs: dict[int, _Output],
    options: PlayOptions,
    stop: threading.Event,
    ready: Callable[[], bool] | None,
) -> int:
    """Matched subscriptions summed over the played topics, after waiting for the wanted count
    (and ``ready``), the settle time and ``delay``."""
    pubs = list({id(o.publisher): o.publisher for o in outputs.values()}.values())

    def matched() -> int:
        return sum(p.get_subscription_count() for p in pubs)

    def done() -> bool:
        return matched() >= options.wait_subscribers and (ready is None or ready())

    waiting = options.wait_subscribers > 0 or ready is not None
    if waiting:
        deadline = time.monotonic() + options.wait_timeout
        while not done() and time.monotonic() < deadline:
            if stop.wait(0.02):
                break
        if done():
            log.info("%d subscription(s) matched", matched())
            stop.wait(SETTLE_S)
        else:
            log.warning(
                "waited %.1f s for %d matched subscriptions%s, found %d: playing anyway",
                options.wait_timeout,
                options.wait_subscribers,
                " and readiness" if ready is not None else "",
                matched(),
            )
    if options.delay:
        stop.wait(options.delay)
    return matched()


def _messages(reader: Any, path: Path, connections: list[Any], t0: int) -> Iterator[Any]:
    """The bag's messages from ``t0`` in log-time order; read failures become a BagError."""
    index = 0
    it = reader.messages(connections=connections, start=t0)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 -- rosbags/mcap/sqlite3 raise their own types
            raise BagError(
                path, f"reading failed ({type(exc).__name__}: {exc})", index=index
            ) from None
        index += 1
        yield item


def _restamped(raw: bytes, out: _Output, log_ns: int, stamp_of: Callable[[int], int]) -> bytes:
    msg = deserialize_message(raw, out.cls)
    stamp = msg.header.stamp
    ns = int(stamp.sec) * _NS + int(stamp.nanosec)
    new = stamp_of(ns if ns != 0 else log_ns)
    stamp.sec, stamp.nanosec = divmod(new, _NS)
    return serialize_message(msg)


def _run(
    reader: Any,
    outputs: dict[int, _Output],
    report: PlayReport,
    options: PlayOptions,
    node: Node,
    clock_pub: Any,
    clock_cls: Any,
    t0: int,
    end_ns: int,
    stop: threading.Event,
    on_publish: Callable[[str, int], None] | None,
) -> None:
    """The playback loop: sleep until each message is due, publishing /clock ticks meanwhile."""
    from tqdm.auto import tqdm

    path = Path(report.bag)
    played = [c for c in reader.connections if c.id in outputs]
    skipped_msgs = sum(r.in_bag for r in report.topics.values() if r.skipped)
    per_loop = sum(int(c.msgcount) for c in played)
    total = None if options.start_offset or options.loops == 0 else per_loop * options.loops
    bar = tqdm(total=total, unit="msg", desc="play", disable=not options.progress, leave=False)
    rate = options.rate
    clock_period = 1.0 / options.clock_hz if options.clock_hz else None
    # between two loops, one mean message interval, so the seam looks like the rest of the bag
    seam_s = (end_ns - t0) / _NS / max(per_loop - 1, 1) / rate
    wall_start: float | None = None
    loop = 0
    if not played:
        log.warning("%s: nothing to play (every selected topic was skipped)", path)
    try:
        while played and not stop.is_set() and (options.loops == 0 or loop < options.loops):
            if loop and stop.wait(seam_s):
                break
            report.skipped_messages += skipped_msgs
            w0 = time.monotonic()
            wall_start = w0 if wall_start is None else wall_start
            now0 = node.get_clock().now().nanoseconds if options.restamp else 0

            def mapped(ns: int, now0: int = now0) -> int:
                """Bag time -> published time (identity unless restamping)."""
                if not options.restamp:
                    return ns
                return now0 + round((ns - t0) / rate)

            next_tick = w0 if clock_pub is not None else math.inf
            last_log = t0

            def tick(now: float, w0: float = w0) -> None:
                nonlocal next_tick
                bag_ns = min(t0 + round((now - w0) * rate * _NS), end_ns)
                msg = clock_cls()
                msg.clock.sec, msg.clock.nanosec = divmod(max(0, mapped(bag_ns)), _NS)
                clock_pub.publish(msg)
                report.clock_published += 1
                next_tick += clock_period  # type: ignore[operator]
                if next_tick < now:  # fell behind: do not burst
                    next_tick = now + clock_period  # type: ignore[operator]

            for conn, log_ns, raw in _messages(reader, path, played, t0):
                due = w0 + (log_ns - t0) / _NS / rate
                while True:
                    now = time.monotonic()
                    if now >= next_tick:
                        tick(now)
                        continue
                    if now >= due or stop.is_set():
                        break
                    stop.wait(min(due, next_tick) - now)
                if stop.is_set():
                    break
                out = outputs[conn.id]
                data = bytes(raw)
                if out.restamp:
                    data = _restamped(data, out, log_ns, mapped)
                    out.report.restamped += 1
                    if report.first_stamp_ns is None:
                        report.first_stamp_ns = mapped(log_ns)
                out.publisher.publish(data)
                report.max_lag_s = max(report.max_lag_s, time.monotonic() - due)
                out.report.published += 1
                report.published_total += 1
                last_log = log_ns
                bar.update(1)
                bar.set_postfix_str(f"t={(log_ns - t0) / _NS:.2f}s", refresh=False)
                if on_publish is not None:
                    on_publish(out.report.published_as, log_ns)
            else:
                last_log = end_ns
                if clock_pub is not None:
                    tick(time.monotonic())  # the clock ends at the bag's end
                loop += 1
                report.loops_completed = loop
            report.bag_s += (last_log - t0) / _NS
    finally:
        bar.close()
        report.interrupted = stop.is_set()
        if wall_start is not None:
            report.wall_s = time.monotonic() - wall_start
