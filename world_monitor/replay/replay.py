"""Offline replay of a rosbag2 recording through the monitor, with the node's semantics.

Why: a recorded episode has to tell you what the live node *would* have done -- where the lock
would have engaged, why, and with what latency -- and show it in Foxglove next to the camera.
So replay drives the same :class:`~world_monitor.runtime.session.MonitorSession` as the node,
in recorded time order, streaming (one message in memory at a time), and writes:

* ``OUT/`` -- a rosbag2 directory with one MCAP file: the input topics copied verbatim plus
  ``/world_monitor/lock`` (std_msgs/Bool, heartbeat + at once when a decision changes it), ``/world_monitor/risk``
  (std_msgs/Float32), ``/world_monitor/heatmap`` (sensor_msgs/Image rgb8, the camera's header)
  and ``/diagnostics`` (diagnostic_msgs/DiagnosticArray), all at recorded log times, so it
  plays with ``ros2 bag play OUT`` and opens in Foxglove;
* ``OUT/summary.json`` -- decisions, alerts (box, onset), latency statistics and an account of
  every message: used / superseded / rejected with a reason, extra topics ignored and counted.

Semantics vs the live node (the differences are deliberate and the only ones):

* **Clock**: the recorded log time is the clock. The heartbeat (lock + watchdog tick) and
  diagnostics run at their configured rates on that clock, phase-locked to the first message.
* **Decisions are synchronous**: a decision completes at the log time of the message that
  triggered it, so inference takes no recorded time, no decision is ever skipped or delayed for
  being slow, and ``backend_timeout`` cannot fire from slow inference (it still fires when the
  bag has no decisions for ``decision_timeout_s``). In the node inference takes real time and a
  chunk arriving while the worker is busy replaces the pending one (counted as superseded).
* **Transport**: no message is lost to QoS; the order is the recorded order (log time). Header
  stamps are still checked per stream (out-of-order stamps are rejected and close the gate).
  A zero header stamp ("unset" in ROS) falls back to the message's log time, which *is* the
  replay clock; the node has no such clock and rejects it (``stamp_source``).
* **Camera frames** of another size than the bundle's are prepared by the same declared
  transform as in the node (``image_resize``, ``crop_roi``:
  :mod:`world_monitor.data.frame_prep`); the heatmap is mapped back to the camera's size.
* **The gate does not act on the recording**: the recorded robot ran unmodified, so a SLOW/STOP
  does not tell the monitor that its last rollouts stopped describing the robot's motion
  (``commands_follow_gate=False``); the node, whose relay or lock does act, does tell it. Only
  the ``motion`` signal after an alert can differ.
* **Determinism**: same bag + same monitor -> identical summary and identical MCAP messages.
  The only values measured on the wall clock are the monitor's own ``latency_ms``; a
  deterministic monitor makes the whole output byte-identical.

Bad bags: an unreadable / truncated bag, or one without usable image/action topics, raises
:class:`~world_monitor.data.bag.BagError` (no output is left behind). Bad *messages* (wrong
encoding, wrong action dimension or horizon, out-of-order stamps, undecodable data) are
counted per reason and close the gate exactly as they would in the node.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm.auto import tqdm

from world_monitor.data.bag.codec import IMAGE, check_action_field, get_store
from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.export import _rename_storage
from world_monitor.data.bag.integrity import CORRUPT_CHUNK, CorruptChunk, ReadStats, iter_messages
from world_monitor.data.bag.scan import open_reader, pick_topics, topic_table
from world_monitor.data.frame_prep import RESIZE_MODES, FramePrep, FramePrepError, parse_roi
from world_monitor.replay.fit import check_bag_fits_monitor
from world_monitor.replay.lookahead import Scout
from world_monitor.ros.convert import (
    BOOL,
    DIAG_ARRAY,
    FLOAT32,
    ConversionError,
    actions_from_msg,
    bool_msg,
    diagnostic_array_msg,
    float32_msg,
    header_msg,
    heatmap_rgb,
    image_from_msg,
    image_msg,
    rosbags_factory,
    stamp_of,
)
from world_monitor.runtime.inputs import ACTIONS
from world_monitor.runtime.inputs import IMAGE as IMAGE_STREAM
from world_monitor.runtime.protocol import MonitorLike
from world_monitor.runtime.session import (
    DecisionResult,
    MonitorSession,
    SessionConfig,
    gate_config_for,
)
from world_monitor.runtime.types import Reason

__all__ = [
    "DIAGNOSTICS_TOPIC",
    "HEATMAP_TOPIC",
    "LOCK_TOPIC",
    "MONITOR_TOPICS",
    "RISK_TOPIC",
    "ReplayResult",
    "replay_bag",
]

logger = logging.getLogger(__name__)

LOCK_TOPIC = "/world_monitor/lock"
RISK_TOPIC = "/world_monitor/risk"
HEATMAP_TOPIC = "/world_monitor/heatmap"
DIAGNOSTICS_TOPIC = "/diagnostics"
MONITOR_TOPICS: dict[str, str] = {
    LOCK_TOPIC: BOOL,
    RISK_TOPIC: FLOAT32,
    HEATMAP_TOPIC: IMAGE,
    DIAGNOSTICS_TOPIC: DIAG_ARRAY,
}
DIAG_NAME = "world_monitor: gate"
#: a gap in log time longer than this is a *clock gap* (robots without an RTC jump by years
#: when NTP syncs; recordings pause): the heartbeat runs normally for this long after the last
#: message -- every watchdog timeout (~1 s) fires on the recorded clock as it would on the
#: robot -- then jumps, phase-locked, to the message after the gap. So heartbeat work is
#: bounded by messages x (this / heartbeat period), never by the length of the gap.
GAP_SIMULATED_S = 5.0
#: gaps listed in the summary (all are counted)
GAP_EXAMPLES = 10
#: the look-ahead holds at most this many decoded messages (memory bound for bags whose
#: decisions are far apart), and ``2 x threads`` coming decisions
LOOKAHEAD_MESSAGES = 4096
SEMANTICS = (
    "recorded log time is the clock; heartbeat and diagnostics run at their rates on it; "
    "decisions are synchronous (complete at the triggering message's log time, never skipped)"
)


@dataclass
class ReplayResult:
    """What :func:`replay_bag` produced: the summary and where the outputs are, and how the
    model passes were computed (``perf``: not in the summary, which is the same whatever the
    threads)."""

    summary: dict[str, Any]
    bag_path: Path | None
    summary_path: Path | None
    perf: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Event:
    """One storage item on its way through the look-ahead: the raw message (or a corrupt
    chunk), its decoded form for the session, and whether the scout decided after it."""

    item: Any
    stream: str | None = None
    decoded: Any = None
    decision: bool = False


def _default_out(bag: Path) -> Path:
    base = bag.parent / (bag.stem if bag.is_file() else bag.name)
    return base.with_name(base.name + "_monitor")


def _load_monitor(bundle: str | Path | None, backend: str | None) -> MonitorLike:
    if bundle is None:
        raise ValueError("replay needs a monitor: pass bundle=... (or monitor=... in tests)")
    from world_monitor.runtime.monitor import load_monitor  # lazy: torch/onnx only when needed

    return load_monitor(bundle, backend)


def replay_bag(
    bag: str | Path,
    out: str | Path | None = None,
    *,
    monitor: MonitorLike | None = None,
    bundle: str | Path | None = None,
    backend: str | None = None,
    image_topic: str | None = None,
    action_topic: str | None = None,
    gate_overrides: Mapping[str, Any] | None = None,
    session_config: SessionConfig | None = None,
    heartbeat_rate_hz: float = 10.0,
    diagnostics_rate_hz: float = 1.0,
    image_resize: str = "stretch",
    crop_roi: tuple[int, int, int, int] | None = None,
    distro: str = "jazzy",
    write_bag: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    action_field: str = "positions",
    check_fit: bool = True,
    threads: int | None = None,
) -> ReplayResult:
    """Replay ``bag`` (rosbag2 directory or a bare .mcap/.db3) through a monitor.

    Args:
        bag: the recording.
        out: output rosbag2 directory (default ``<bag>_monitor`` next to the bag); the summary
            is written to ``out/summary.json``.
        monitor: a ready :class:`MonitorLike` (tests inject a fake); otherwise one is loaded
            with ``world_monitor.runtime.monitor.load_monitor(bundle, backend)``.
        image_topic, action_topic: default: the only (or default-named) topic of the type.
        gate_overrides: GateConfig fields overriding the bundle's calibration.
        session_config: decision policy (default: one decision per chunk).
        heartbeat_rate_hz: lock heartbeat + watchdog rate on the recorded clock.
        diagnostics_rate_hz: ``/diagnostics`` rate on the recorded clock.
        image_resize, crop_roi: how camera frames of another size become the bundle's input
            (:class:`~world_monitor.data.frame_prep.FramePrep`; the node's parameters
            ``image_resize`` / ``image_crop_roi``).
        write_bag: ``False`` only computes the summary (nothing written).
        overwrite: replace an existing ``out``.
        action_field: the JointTrajectoryPoint array that carries the chunk (``positions``,
            ``velocities``, ``accelerations`` or ``effort``; the node's ``action_field``).
        check_fit: compare the first messages with the monitor before replaying
            (:mod:`world_monitor.replay.fit`); off only to replay a known-mismatched bag on
            purpose (every chunk is then rejected and counted).
        threads: model passes of coming decisions computed ahead on this many threads
            (:mod:`world_monitor.replay.lookahead`; default: the machine's cores, at most 4);
            0 or 1 computes each decision when it is due. The decisions are the same either
            way; a monitor that cannot run passes concurrently (TensorRT, diffusion sampling,
            a test fake) replays sequentially.

    Raises:
        BagError: unreadable or truncated bag, missing/ambiguous topics, output exists.
        BundleMismatch: the recording does not fit the monitor (action dim, horizon, camera
            rate, undecodable camera), one line naming every difference.
    """
    path = Path(bag)
    for name, rate in (
        ("heartbeat_rate_hz", heartbeat_rate_hz),
        ("diagnostics", diagnostics_rate_hz),
    ):
        if not rate > 0:
            raise ValueError(f"{name} must be > 0, got {rate}")
    prep_args = (image_resize, parse_roi(crop_roi))  # FramePrepError before any work
    check_action_field(action_field)
    if image_resize not in RESIZE_MODES:
        raise FramePrepError(f"image_resize must be one of {'|'.join(RESIZE_MODES)}")
    out_path = Path(out) if out is not None else _default_out(path)
    if write_bag and out_path.exists() and not overwrite:
        raise BagError(out_path, "output exists already (pass overwrite to replace it)")
    reader = open_reader(path)
    try:
        topics = topic_table(reader)
        # a topic declared in the metadata but without messages is as good as missing
        nonempty = {t: v for t, v in topics.items() if v[1] > 0}
        img_topic, act_topic = pick_topics(path, nonempty, image_topic, action_topic)
        if monitor is None:
            monitor = _load_monitor(bundle, backend)
        config = session_config or SessionConfig(
            # the recorded robot ran unmodified whatever the replayed gate decides
            keep_decisions=True,
            measure_wall_time=False,
            commands_follow_gate=False,
        )
        frame_prep = FramePrep(tuple(int(v) for v in monitor.image_size), *prep_args)
        if check_fit:
            store = get_store(distro)
            check_bag_fits_monitor(
                path,
                img_topic,
                act_topic,
                monitor,
                decode_image=lambda m, t: frame_prep.prepare(image_from_msg(m, t)[0]),
                decode_chunk=lambda m, t, now: actions_from_msg(m, t, now, None, action_field),
                deserialize=store.deserialize_cdr,
                period_tolerance=config.context_period_tolerance,
                what=f"bundle {bundle}" if bundle is not None else "monitor",
                reader=reader,
            )
        gate_config = gate_config_for(monitor, **dict(gate_overrides or {}))
        session = MonitorSession(monitor, gate_config, config)
        n_threads = default_replay_threads() if threads is None else int(threads)
        start = getattr(monitor, "start_prefetch", None)
        prefetching = bool(n_threads > 1 and start is not None and start(n_threads))
        run = _Replay(
            path,
            reader,
            topics,
            img_topic,
            act_topic,
            session,
            distro,
            int(round(1e9 / heartbeat_rate_hz)),
            int(round(1e9 / diagnostics_rate_hz)),
            frame_prep,
            action_field,
            scout=Scout(monitor, gate_config, config) if prefetching else None,
            lookahead_decisions=2 * n_threads,
        )
        tmp = out_path.with_name(out_path.name + ".partial")
        if write_bag:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            if write_bag:
                with Writer(tmp, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
                    run.run(writer, progress)
            else:
                run.run(None, progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        perf: dict[str, Any] = {"threads": 1, "prefetch": None}
        if monitor is not None and getattr(monitor, "prefetch_stats", None) is not None:
            stats = monitor.prefetch_stats()
            if stats is not None:
                perf = {"threads": stats["threads"], "prefetch": stats}
            monitor.stop_prefetch()
        try:
            reader.close()
        except Exception:  # noqa: BLE001 -- closing a corrupt bag may fail too
            logger.debug("closing %s failed", path, exc_info=True)
    summary = run.summary()
    summary_path = None
    if write_bag:
        if out_path.exists():
            shutil.rmtree(out_path)
        _rename_storage(tmp, out_path)
        summary_path = out_path / "summary.json"
        summary["output"]["bag"] = str(out_path)
        summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        logger.info("replay of %s written to %s", path, out_path)
    return ReplayResult(summary, out_path if write_bag else None, summary_path, perf)


def default_replay_threads() -> int:
    """Replay's default look-ahead threads: every core, at most 4 (measured: the model pass
    is compute-bound, so more threads than cores only queue)."""
    return max(1, min(4, os.cpu_count() or 1))


class _Replay:
    """The streaming loop (one instance per replay)."""

    def __init__(
        self,
        path: Path,
        reader: Any,
        topics: dict[str, tuple[str, int]],
        img_topic: str,
        act_topic: str,
        session: MonitorSession,
        distro: str,
        heartbeat_ns: int,
        diagnostics_ns: int,
        frame_prep: FramePrep,
        action_field: str = "positions",
        *,
        scout: Scout | None = None,
        lookahead_decisions: int = 0,
    ) -> None:
        self.path = path
        self.scout = scout
        self.lookahead_decisions = int(lookahead_decisions) if scout is not None else 0
        self.action_field = action_field
        self.frame_prep = frame_prep
        self.reader = reader
        self.topics = topics
        self.img_topic = img_topic
        self.act_topic = act_topic
        self.session = session
        self.store = get_store(distro)
        self.factory = rosbags_factory(self.store)
        self.heartbeat_ns = heartbeat_ns
        self.diagnostics_ns = diagnostics_ns
        self.writer: Any = None
        self.out_conns: dict[str, Any] = {}
        self.written: Counter[str] = Counter()
        self.not_copied: Counter[str] = Counter()
        self.by_topic: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self.rejections: dict[str, Counter[str]] = {IMAGE_STREAM: Counter(), ACTIONS: Counter()}
        self.examples: dict[str, dict[str, str]] = {IMAGE_STREAM: {}, ACTIONS: {}}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.next_hb: int | None = None
        self.next_diag: int | None = None
        self.clock_ns: int | None = None  # the log time the timers have been run up to
        self.gap_ns = int(GAP_SIMULATED_S * 1e9)
        self.gaps: list[dict[str, Any]] = []
        self.n_gaps = 0
        self.integrity = ReadStats()
        self.n_read = 0
        self.lock_log: list[tuple[float, bool]] = []

    # ---- output ---------------------------------------------------------------------------

    def _open_outputs(self, writer: Any) -> None:
        self.writer = writer
        if writer is None:
            return
        for conn in self.reader.connections:
            if conn.topic in self.out_conns or conn.topic in MONITOR_TOPICS:
                continue
            if conn.msgtype not in self.store.types:
                continue  # a custom type we have no definition for: counted as not copied
            self.out_conns[conn.topic] = writer.add_connection(
                conn.topic, conn.msgtype, typestore=self.store
            )
        for topic, msgtype in MONITOR_TOPICS.items():
            self.out_conns[topic] = writer.add_connection(topic, msgtype, typestore=self.store)

    def _write(self, topic: str, msgtype: str, msg: Any, log_ns: int) -> None:
        self.written[topic] += 1
        if self.writer is not None:
            self.writer.write(self.out_conns[topic], log_ns, self.store.serialize_cdr(msg, msgtype))

    def _copy(self, conn: Any, log_ns: int, raw: bytes) -> None:
        c = self.out_conns.get(conn.topic) if conn.topic not in MONITOR_TOPICS else None
        if c is None:
            self.not_copied[conn.topic] += 1
            return
        self.written[conn.topic] += 1
        if self.writer is not None:
            self.writer.write(c, log_ns, raw)

    def _publish_lock(self, lock: bool, log_ns: int) -> None:
        self._write(LOCK_TOPIC, BOOL, bool_msg(self.factory, lock), log_ns)
        self.lock_log.append((log_ns * 1e-9, bool(lock)))

    def _publish_diagnostics(self, log_ns: int) -> None:
        level, message, values = self.session.diagnostics()
        msg = diagnostic_array_msg(
            self.factory,
            header_msg(self.factory, log_ns * 1e-9),
            [(level, DIAG_NAME, message, "world_monitor", values)],
        )
        self._write(DIAGNOSTICS_TOPIC, DIAG_ARRAY, msg, log_ns)

    def _publish_decision(self, res: DecisionResult, log_ns: int) -> None:
        a = res.assessment
        if a is not None and a.risk is not None:
            self._write(RISK_TOPIC, FLOAT32, float32_msg(self.factory, float(a.risk)), log_ns)
        if a is not None and a.confidence_map is not None and res.image_hw is not None:
            try:
                rgb = heatmap_rgb(a.confidence_map, res.image_hw)
                header, camera_hw = res.tag if res.tag is not None else (None, None)
                if camera_hw is not None:
                    rgb = self.frame_prep.map_back(rgb, camera_hw)
                if header is None:
                    header = header_msg(self.factory, a.stamp)
                self._write(HEATMAP_TOPIC, IMAGE, image_msg(self.factory, rgb, header), log_ns)
            except Exception as exc:  # noqa: BLE001 -- a bad map must not stop the replay
                logger.warning("heatmap at %.3f failed: %s", a.stamp, exc)
        if not self.lock_log or self.lock_log[-1][1] != bool(res.status.lock):
            self._publish_lock(res.status.lock, log_ns)  # a change at once, like the node

    # ---- clock ----------------------------------------------------------------------------

    def _advance_to(self, log_ns: int) -> None:
        """Run the heartbeat and diagnostics timers up to and including ``log_ns``.

        Across a clock gap (> :data:`GAP_SIMULATED_S` since the previous message) the timers
        run for the first ``GAP_SIMULATED_S`` only, then skip to the last period at or before
        ``log_ns``; that heartbeat sees the inputs from before the gap, so the gap shows as a
        stale-input STOP, and it is recorded once in the summary (``clock.gaps``).
        """
        if self.first_ns is None:
            self.first_ns = self.next_hb = self.next_diag = log_ns
        prev = self.clock_ns if self.clock_ns is not None else log_ns
        self.clock_ns = max(prev, log_ns)
        if log_ns - prev > self.gap_ns:
            self._run_timers(prev + self.gap_ns)
            assert self.next_hb is not None and self.next_diag is not None
            skipped = max(0, (log_ns - self.next_hb) // self.heartbeat_ns)
            self.next_hb += skipped * self.heartbeat_ns
            self.next_diag += max(0, (log_ns - self.next_diag) // self.diagnostics_ns) * (
                self.diagnostics_ns
            )
            self._run_timers(log_ns)
            st = self.session.status()
            self.n_gaps += 1
            gap = {
                "start": prev * 1e-9,
                "end": log_ns * 1e-9,
                "seconds": (log_ns - prev) * 1e-9,
                "heartbeats_skipped": int(skipped),
                "lock": bool(st.lock),
                "reason": str(st.reasons[0]) if st.reasons else None,
            }
            if len(self.gaps) < GAP_EXAMPLES:
                self.gaps.append(gap)
            log = logger.warning if self.n_gaps == 1 else logger.debug
            log(
                "%s: log time jumps %.3f s (%.3f -> %.3f); heartbeat skipped the gap, gate %s",
                self.path,
                gap["seconds"],
                gap["start"],
                gap["end"],
                gap["reason"],
            )
            return
        self._run_timers(log_ns)

    def _run_timers(self, log_ns: int) -> None:
        """Fire every heartbeat and diagnostics period due at or before ``log_ns``."""
        assert self.next_hb is not None and self.next_diag is not None
        while self.next_hb <= log_ns or self.next_diag <= log_ns:
            if self.next_hb <= self.next_diag:
                st = self.session.tick(self.next_hb * 1e-9)
                self._publish_lock(st.lock, self.next_hb)
                self.next_hb += self.heartbeat_ns
            else:
                self.session.tick(self.next_diag * 1e-9)
                self._publish_diagnostics(self.next_diag)
                self.next_diag += self.diagnostics_ns

    # ---- inputs ---------------------------------------------------------------------------

    def _reject(self, stream: str, err: ConversionError, index: int, stamp: float) -> None:
        self.rejections[stream][err.kind] += 1
        self.examples[stream].setdefault(err.kind, f"message #{index}: {err.detail}")
        self.session.reject_input(stream, err.reason, f"{err.kind}: {err.detail}", stamp)

    def _deserialize(self, raw: bytes, msgtype: str, stream: str) -> Any:
        try:
            return self.store.deserialize_cdr(raw, msgtype)
        except Exception as exc:  # noqa: BLE001 -- corrupt payloads fail in many ways
            reason = Reason.invalid_image if stream == IMAGE_STREAM else Reason.invalid_actions
            raise ConversionError(
                reason, "undeserializable", f"CDR decoding failed ({type(exc).__name__}: {exc})"
            ) from None

    def _decode(self, conn: Any, raw: bytes, now: float) -> Any:
        """A message of the image/action topic decoded for the session (a tuple of the
        session call's arguments) or the :class:`ConversionError` that rejects it. Pure, so
        the look-ahead decodes each message once for both sessions."""
        if conn.topic == self.img_topic:
            try:
                msg = self._deserialize(raw, conn.msgtype, IMAGE_STREAM)
                rgb, enc = image_from_msg(msg, conn.msgtype)
                camera_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
                prepared = self.frame_prep.prepare(rgb)
            except ConversionError as err:
                return err
            except FramePrepError as exc:
                return ConversionError(Reason.invalid_image, "image_prep", str(exc))
            stamp = stamp_of(msg)
            return (prepared, now if stamp is None else stamp, enc, (msg.header, camera_hw))
        try:
            msg = self._deserialize(raw, conn.msgtype, ACTIONS)
            return actions_from_msg(
                msg, conn.msgtype, now, int(self.session.monitor.action_dim), self.action_field
            )
        except ConversionError as err:
            return err

    @staticmethod
    def _feed(session: MonitorSession, stream: str, decoded: Any, now: float) -> None:
        """Hand a decoded message to ``session`` (rejections only to the session: the real
        replay's own counts are kept by :meth:`_reject`)."""
        if isinstance(decoded, ConversionError):
            session.reject_input(stream, decoded.reason, f"{decoded.kind}: {decoded.detail}", now)
        elif stream == IMAGE_STREAM:
            prepared, stamp, enc, tag = decoded
            session.on_image(prepared, stamp, enc, tag=tag)
        else:
            chunk, stamp = decoded
            session.on_actions(chunk, stamp)

    def _handle(self, stream: str, decoded: Any, now: float, index: int) -> None:
        if isinstance(decoded, ConversionError):
            self._reject(stream, decoded, index, now)
        else:
            self._feed(self.session, stream, decoded, now)

    # ---- loop -----------------------------------------------------------------------------

    def run(self, writer: Any, progress: bool) -> None:
        self._open_outputs(writer)
        total = sum(n for _, n in self.topics.values())
        streams = {self.img_topic: IMAGE_STREAM, self.act_topic: ACTIONS}
        bar = tqdm(total=total, desc=f"replay {self.path.name}", unit="msg", disable=not progress)
        queue: deque[_Event] = deque()
        ahead = 0  # shadow decisions among the queued events
        state: dict[str, int | None] = {"prev_ns": None}
        try:
            for item in iter_messages(self.reader, self.path, self.integrity):
                event = _Event(item)
                if not isinstance(item, CorruptChunk) and item[0].topic in streams:
                    conn, log_ns, raw = item
                    event.stream = streams[conn.topic]
                    event.decoded = self._decode(conn, raw, log_ns * 1e-9)
                if self.scout is not None:
                    event.decision = self._scout(event, streams)
                    ahead += event.decision
                queue.append(event)
                while queue and (
                    ahead > self.lookahead_decisions or len(queue) > LOOKAHEAD_MESSAGES
                ):
                    done = queue.popleft()
                    ahead -= done.decision
                    self._process(done, state, bar)
            while queue:
                self._process(queue.popleft(), state, bar)
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 -- truncated/corrupt storage surfaces here
            raise BagError(
                self.path,
                f"bag is truncated or corrupt after {self.n_read} of {total} messages "
                f"({type(exc).__name__}: {exc})",
            ) from None
        finally:
            bar.close()
        if self.n_read < total:
            raise BagError(
                self.path, f"bag is truncated: read {self.n_read} of {total} messages in metadata"
            )
        if self.last_ns is not None:  # final heartbeat + diagnostics at the end of the recording
            st = self.session.tick(self.last_ns * 1e-9)
            self._publish_lock(st.lock, self.last_ns)
            self._publish_diagnostics(self.last_ns)

    def _scout(self, event: _Event, streams: Mapping[str, str]) -> bool:
        """Feed ``event`` to the shadow session; True if a shadow decision followed it."""
        assert self.scout is not None
        item = event.item
        if isinstance(item, CorruptChunk):
            now = item.start_ns * 1e-9
            for conn, n in item.counts if item.counts_known else ():
                stream = streams.get(conn.topic)
                reason = Reason.invalid_image if stream == IMAGE_STREAM else Reason.invalid_actions
                for _ in range(n if stream is not None else 0):
                    self.scout.session.reject_input(
                        stream, reason, f"{CORRUPT_CHUNK}: {item.detail}", now
                    )
            return False
        if event.stream is None:
            return False
        now = item[1] * 1e-9
        self._feed(self.scout.session, event.stream, event.decoded, now)
        return self.scout.decide_if_due(now)

    def _process(self, event: _Event, state: dict[str, int | None], bar: Any) -> None:
        """The replay of one message, in recorded order (the sequential semantics)."""
        item = event.item
        if isinstance(item, CorruptChunk):
            state["prev_ns"] = self._on_corrupt(item, state["prev_ns"], bar)
            return
        conn, log_ns, raw = item
        self.n_read += 1
        bar.update(1)
        prev_ns = state["prev_ns"]
        if prev_ns is not None and log_ns < prev_ns:
            raise BagError(
                self.path,
                f"storage returned messages out of log-time order ({log_ns} ns after {prev_ns} ns)",
                topic=conn.topic,
            )
        state["prev_ns"] = self.last_ns = log_ns
        self._advance_to(log_ns)
        self._copy(conn, log_ns, raw)
        index = self.by_topic[conn.topic]
        self.by_topic[conn.topic] += 1
        if event.stream is None:
            self.ignored[conn.topic] += 1
            return
        now = log_ns * 1e-9
        self._handle(event.stream, event.decoded, now, index)
        if self.session.decision_due(now):
            self._publish_decision(self.session.decide(now), log_ns)

    def _on_corrupt(self, chunk: CorruptChunk, prev_ns: int | None, bar: Any) -> int | None:
        """Count every message of a chunk that failed its CRC as rejected (``corrupt_chunk``)
        at the chunk's start time: on the image/action topics through the session, so the gate
        closes exactly as for any other unusable input; elsewhere as ignored. The messages are
        not copied to the output. Unknown counts (message index damaged too) stay unread, so
        the end-of-bag count check raises :class:`BagError`."""
        if not chunk.counts_known:
            return prev_ns
        log_ns = chunk.start_ns if prev_ns is None else max(chunk.start_ns, prev_ns)
        self.last_ns = log_ns
        self._advance_to(log_ns)
        now = log_ns * 1e-9
        streams = {self.img_topic: IMAGE_STREAM, self.act_topic: ACTIONS}
        for conn, n in chunk.counts:
            self.n_read += n
            bar.update(n)
            self.not_copied[conn.topic] += n
            stream = streams.get(conn.topic)
            for _ in range(n):
                index = self.by_topic[conn.topic]
                self.by_topic[conn.topic] += 1
                if stream is None:
                    self.ignored[conn.topic] += 1
                    continue
                reason = Reason.invalid_image if stream == IMAGE_STREAM else Reason.invalid_actions
                self._reject(
                    stream, ConversionError(reason, CORRUPT_CHUNK, chunk.detail), index, now
                )
        return log_ns

    # ---- summary --------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        s = self.session.summary()
        acc = s["accounting"]
        n_img, n_act = self.by_topic[self.img_topic], self.by_topic[self.act_topic]
        problems = list(s["accounting_problems"])
        if acc[IMAGE_STREAM]["offered"] != n_img:
            problems.append(f"image topic has {n_img} messages, {acc['image']['offered']} offered")
        if acc[ACTIONS]["offered"] != n_act:
            problems.append(
                f"action topic has {n_act} messages, {acc['actions']['offered']} offered"
            )
        if n_img + n_act + sum(self.ignored.values()) != self.n_read:
            problems.append("messages read != image + actions + ignored")
        opened = [t for t, lock in self.lock_log if not lock]
        first_open = opened[0] if opened else None
        engaged_after_open = None
        if first_open is not None:
            engaged_after_open = next(
                (t for t, lock in self.lock_log if lock and t > first_open), None
            )
        start = None if self.first_ns is None else self.first_ns * 1e-9
        end = None if self.last_ns is None else self.last_ns * 1e-9
        return {
            "bag": str(self.path),
            "image_topic": self.img_topic,
            "action_topic": self.act_topic,
            "semantics": SEMANTICS,
            "clock": {
                "start": start,
                "end": end,
                "duration": None if start is None or end is None else end - start,
                "gaps": {"count": self.n_gaps, "examples": list(self.gaps)},
            },
            "integrity": self.integrity.to_dict(),
            "messages": {
                "read": self.n_read,
                "by_topic": {
                    t: {
                        "type": self.topics.get(t, ("?", 0))[0],
                        "count": n,
                        "role": "image"
                        if t == self.img_topic
                        else "actions"
                        if t == self.act_topic
                        else "ignored",
                    }
                    for t, n in sorted(self.by_topic.items())
                },
                "ignored": dict(sorted(self.ignored.items())),
                "ignored_total": int(sum(self.ignored.values())),
                "rejected_before_session": {
                    k: dict(sorted(v.items())) for k, v in self.rejections.items()
                },
                "rejection_examples": self.examples,
                "accounted": not problems,
                "problems": problems,
            },
            "lock": {
                "final": self.session.status().lock,
                "first_open": first_open,
                "first_engaged_after_open": engaged_after_open,
                "engaged_samples": sum(1 for _, lock in self.lock_log if lock),
                "samples": len(self.lock_log),
            },
            "output": {
                "bag": None,
                "topics": dict(sorted(self.written.items())),
                "not_copied": dict(sorted(self.not_copied.items())),
            },
            "session": s,
        }
