"""One pass over a rosbag2 bag that decodes and classifies every message.

Why one shared pass: ``import_episode_bag`` (strict: the first bad message raises) and
``inspect`` (lenient: bad messages are counted with a reason) must apply *the same* rules, or a
bag that inspects clean could still fail to import. Every message ends up in exactly one bucket:
usable, rejected (with a reason key), or on an ignored topic.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader
from tqdm.auto import tqdm

from world_monitor.data.bag.codec import (
    ACTION_TYPES,
    COMPRESSED,
    IMAGE,
    IMAGE_TYPES,
    STRING,
    Chunk,
    Rejected,
    check_action_field,
    decode_chunk,
    decode_compressed_image,
    decode_image,
    decode_mask,
    decode_meta,
    get_store,
    time_to_ns,
)
from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.export import (
    DEFAULT_ACTION_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    MASK_TOPIC,
    META_TOPIC,
)
from world_monitor.data.bag.integrity import (
    CORRUPT_CHUNK,
    CorruptChunk,
    ReadStats,
    iter_messages,
    verify_bag,
)

__all__ = [
    "BagScan",
    "TopicScan",
    "open_reader",
    "pick_topics",
    "scan_bag",
    "topic_table",
]

log = logging.getLogger(__name__)


@dataclass
class TopicScan:
    """Decoded messages of one topic plus the accounting of every message on it."""

    topic: str
    msgtype: str
    role: str  # "image", "actions", "meta", "mask"
    count: int = 0
    usable: int = 0
    rejected: Counter = field(default_factory=Counter)
    first_rejection: dict[str, str] = field(default_factory=dict)
    stamps_ns: list[int] = field(default_factory=list)
    log_ns: list[int] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    image_shape: tuple[int, int] | None = None
    encoding: str | None = None
    action_dim: int | None = None
    horizons: Counter = field(default_factory=Counter)
    joint_names: list[str] | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "topic": self.topic,
            "type": self.msgtype,
            "role": self.role,
            "messages": self.count,
            "usable": self.usable,
            "rejected": dict(self.rejected),
            "rejection_examples": dict(self.first_rejection),
        }
        if self.role in ("image", "mask"):
            out["image_size"] = list(self.image_shape) if self.image_shape else None
            out["encoding"] = self.encoding
        if self.role == "actions":
            out["action_dim"] = self.action_dim
            out["horizon"] = (
                {"min": min(self.horizons), "max": max(self.horizons)} if self.horizons else None
            )
            out["joint_names"] = self.joint_names
        return out


@dataclass
class BagScan:
    """Result of :func:`scan_bag`."""

    path: Path
    storage: str
    topics: dict[str, tuple[str, int]]  # topic -> (type, message count)
    scans: dict[str, TopicScan]
    ignored: Counter  # topic -> messages not decoded (unrelated topics)
    read_error: str | None = None
    messages_read: int = 0
    integrity: ReadStats = field(default_factory=ReadStats)


def open_reader(path: str | Path) -> Reader:
    """Open a bag directory or a bare .mcap/.db3 file; any failure becomes a BagError.

    Also runs the whole-file integrity checks (MCAP summary CRC, sqlite3 quick_check, see
    :func:`~world_monitor.data.bag.integrity.verify_bag`): a bag whose index is corrupt is
    refused here, before any message is trusted.
    """
    p = Path(path)
    if not p.exists():
        raise BagError(p, "does not exist")
    try:
        reader = Reader(p)
        reader.open()
    # rosbags, mcap, sqlite3 and yaml all raise their own types
    except Exception as exc:  # noqa: BLE001
        hint = ""
        if "database" in str(exc):
            hint = "; the sqlite3 database is damaged: try `sqlite3 FILE .recover` on a copy"
        elif "magic" in str(exc) or "malformed" in str(exc):
            hint = "; the file looks truncated (recording cut off?): try `mcap recover` or "
            hint += "`ros2 bag reindex`"
        raise BagError(p, f"cannot open bag ({type(exc).__name__}: {exc}){hint}") from None
    try:
        verify_bag(reader, p)
    except BaseException:
        try:
            reader.close()
        except Exception:  # noqa: BLE001 -- the integrity error is what matters
            log.debug("closing %s failed", p, exc_info=True)
        raise
    return reader


def _storage_of(path: Path) -> str:
    files = [path] if path.is_file() else list(path.iterdir())
    for f in files:
        if f.suffix == ".mcap":
            return "mcap"
        if f.suffix == ".db3":
            return "sqlite3"
    return "unknown"


def topic_table(reader: Reader) -> dict[str, tuple[str, int]]:
    return {name: (info.msgtype or "?", int(info.msgcount)) for name, info in reader.topics.items()}


def _describe(topics: dict[str, tuple[str, int]]) -> str:
    if not topics:
        return "the bag has no topics"
    return "topics in the bag: " + ", ".join(
        f"{t} [{ty}, {n} msgs]" for t, (ty, n) in sorted(topics.items())
    )


def _pick(
    path: Path,
    topics: dict[str, tuple[str, int]],
    requested: str | None,
    types: tuple[str, ...],
    default: str,
    what: str,
    exclude: tuple[str, ...] = (),
) -> str:
    if requested is not None:
        if requested not in topics:
            raise BagError(
                path,
                f"requested {what} topic {requested!r} not found; {_describe(topics)}",
            )
        if topics[requested][0] not in types:
            raise BagError(
                path,
                f"{what} topic {requested!r} has type {topics[requested][0]}, expected one of "
                f"{list(types)}",
                topic=requested,
            )
        return requested
    cands = [t for t, (ty, _) in topics.items() if ty in types and t not in exclude]
    if not cands:
        raise BagError(path, f"no {what} topic (types {list(types)}); {_describe(topics)}")
    if len(cands) == 1:
        return cands[0]
    if default in cands:
        return default
    raise BagError(path, f"several {what} topics {sorted(cands)}: choose one explicitly")


def pick_topics(
    path: Path,
    topics: dict[str, tuple[str, int]],
    image_topic: str | None,
    action_topic: str | None,
) -> tuple[str, str]:
    """Image and action topics: as requested, else the only (or default-named) topic by type."""
    img = _pick(
        path,
        topics,
        image_topic,
        IMAGE_TYPES,
        DEFAULT_IMAGE_TOPIC,
        "image",
        (MASK_TOPIC,),
    )
    act = _pick(path, topics, action_topic, ACTION_TYPES, DEFAULT_ACTION_TOPIC, "action")
    return img, act


def _role_of(topic: str, msgtype: str) -> str | None:
    if topic == META_TOPIC and msgtype == STRING:
        return "meta"
    if topic == MASK_TOPIC and msgtype == IMAGE:
        return "mask"
    if msgtype in IMAGE_TYPES:
        return "image"
    if msgtype in ACTION_TYPES:
        return "actions"
    return None


def scan_bag(
    path: str | Path,
    *,
    topics: dict[str, str] | None = None,
    strict: bool = True,
    keep_data: bool = True,
    action_dim: int | None = None,
    distro: str = "jazzy",
    progress: bool = False,
    action_field: str = "positions",
) -> BagScan:
    """Decode and classify messages.

    ``topics`` maps topic -> role ("image", "actions", "meta", "mask") to decode; ``None`` decodes
    every topic of a recognised type (inspect mode). Other topics are counted as ignored. With
    ``strict`` the first rejected message raises :class:`BagError` naming the topic and message
    index (0-based, per topic); otherwise it is counted under its reason. Stamps must be strictly
    increasing per topic (header stamp; log time for headerless messages or zero stamps).
    ``action_field`` is the JointTrajectoryPoint array read as the chunk (``positions``...).
    """
    check_action_field(action_field)
    path = Path(path)
    store = get_store(distro)
    reader = open_reader(path)
    scan = BagScan(path, _storage_of(path), {}, {}, Counter())
    try:
        scan.topics = topic_table(reader)
        for conn in reader.connections:
            role = (
                topics.get(conn.topic) if topics is not None else _role_of(conn.topic, conn.msgtype)
            )
            if role is not None and conn.topic not in scan.scans:
                scan.scans[conn.topic] = TopicScan(conn.topic, conn.msgtype, role)
        total = sum(n for _, n in scan.topics.values())
        bar = tqdm(total=total, desc=f"read {path.name}", unit="msg", disable=not progress)
        try:
            for item in iter_messages(reader, path, scan.integrity):
                if isinstance(item, CorruptChunk):
                    _count_corrupt(scan, item, strict, bar)
                    continue
                conn, log_ns, raw = item
                scan.messages_read += 1
                bar.update(1)
                ts = scan.scans.get(conn.topic)
                if ts is None:
                    scan.ignored[conn.topic] += 1
                    continue
                index = ts.count
                ts.count += 1
                try:
                    _classify(
                        ts, store, conn.msgtype, raw, log_ns, keep_data, action_dim, action_field
                    )
                except Rejected as rej:
                    if strict:
                        raise BagError(
                            path,
                            rej.detail,
                            topic=ts.topic,
                            index=index,
                            kind=rej.reason,
                        ) from None
                    ts.rejected[rej.reason] += 1
                    ts.first_rejection.setdefault(rej.reason, f"message #{index}: {rej.detail}")
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 -- truncated/corrupt storage surfaces while iterating
            msg = (
                f"bag is truncated or corrupt after {scan.messages_read} of {total} messages "
                f"({type(exc).__name__}: {exc})"
            )
            if strict:
                raise BagError(path, msg) from None
            scan.read_error = msg
        finally:
            bar.close()
        if scan.read_error is None and scan.messages_read < total:
            msg = f"bag is truncated: read {scan.messages_read} of {total} messages in metadata"
            if strict:
                raise BagError(path, msg)
            scan.read_error = msg
    finally:
        try:
            reader.close()
        except Exception:  # closing a corrupt bag may fail too; the read error is what matters
            log.debug("closing %s failed", path, exc_info=True)
    return scan


def _count_corrupt(scan: BagScan, chunk: CorruptChunk, strict: bool, bar: Any) -> None:
    """Account for the messages of a chunk that failed its CRC: rejected (``corrupt_chunk``) on
    decoded topics, ignored elsewhere; strict mode raises like any rejected message."""
    if not chunk.counts_known:  # unaccounted: the read-count check below reports it
        if strict:
            raise BagError(scan.path, chunk.detail, kind=CORRUPT_CHUNK)
        return
    for conn, n in chunk.counts:
        scan.messages_read += n
        bar.update(n)
        ts = scan.scans.get(conn.topic)
        if ts is None:
            scan.ignored[conn.topic] += n
            continue
        if strict:
            raise BagError(
                scan.path, chunk.detail, topic=ts.topic, index=ts.count, kind=CORRUPT_CHUNK
            )
        ts.first_rejection.setdefault(
            CORRUPT_CHUNK, f"messages #{ts.count}-#{ts.count + n - 1}: {chunk.detail}"
        )
        ts.count += n
        ts.rejected[CORRUPT_CHUNK] += n


def _classify(
    ts: TopicScan,
    store: Any,
    msgtype: str,
    raw: bytes,
    log_ns: int,
    keep_data: bool,
    action_dim: int | None,
    action_field: str = "positions",
) -> None:
    """Decode one message into ``ts`` or raise Rejected. Order/duplicate checks use the stamp."""
    try:
        msg = store.deserialize_cdr(raw, msgtype)
    except Exception as exc:  # noqa: BLE001 -- a corrupt message may fail anyhow
        raise Rejected(
            "undeserializable", f"CDR decoding failed ({type(exc).__name__}: {exc})"
        ) from None
    item: Any
    if ts.role in ("image", "mask"):
        if ts.role == "mask":
            item = decode_mask(msg)
            enc = "mono8"
        elif msgtype == COMPRESSED:
            item = decode_compressed_image(msg)
            enc = str(msg.format)
        else:
            item = decode_image(msg)
            enc = str(msg.encoding)
        shape = (int(item.shape[0]), int(item.shape[1]))
        if ts.image_shape is None:
            ts.image_shape, ts.encoding = shape, enc
        elif shape != ts.image_shape:
            raise Rejected(
                "size_mismatch",
                f"image is {shape[0]}x{shape[1]}, earlier ones "
                f"{ts.image_shape[0]}x{ts.image_shape[1]}",
            )
        stamp = time_to_ns(msg.header.stamp) or log_ns
    elif ts.role == "actions":
        chunk: Chunk = decode_chunk(msg, msgtype, log_ns, action_dim or ts.action_dim, action_field)
        if ts.action_dim is None:
            ts.action_dim = int(chunk.points.shape[1])
            if hasattr(msg, "joint_names"):
                ts.joint_names = list(msg.joint_names)
        stamp, item = chunk.stamp_ns, chunk.points
    elif ts.role == "meta":
        item = decode_meta(str(msg.data))
        stamp = log_ns
        if ts.usable:
            raise Rejected("duplicate_meta", "more than one episode meta message")
    else:
        raise Rejected("bad_type", f"no decoder for role {ts.role}")
    if ts.role != "meta" and ts.stamps_ns:
        prev = ts.stamps_ns[-1]
        if stamp == prev:
            raise Rejected("duplicate_stamp", f"stamp {stamp} ns repeats the previous message's")
        if stamp < prev:
            raise Rejected("out_of_order", f"stamp {stamp} ns is before the previous {prev} ns")
    if ts.role == "actions":
        ts.horizons[int(item.shape[0])] += 1
    ts.usable += 1
    ts.stamps_ns.append(stamp)
    ts.log_ns.append(log_ns)
    if keep_data or ts.role == "meta":
        ts.items.append(item)
