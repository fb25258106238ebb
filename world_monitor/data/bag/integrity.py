"""MCAP integrity: chunk and summary CRCs written on export and checked on every read.

Why: a flipped bit inside an uncompressed MCAP chunk still parses -- a pixel, a joint position
or a stamp silently changes -- so without checksums a corrupt recording reads as valid data.
The MCAP format carries a CRC32 per chunk (of its uncompressed records) and one over the
summary section (schemas, channels, statistics and the chunk index, i.e. where every chunk
is). ``rosbags`` writes both as 0 ("not computed") and, when it reads, aborts the whole bag at
the first bad chunk. So:

* :func:`seal_mcap` fills both CRCs into an MCAP file after ``rosbags`` closed it (export and
  replay outputs call it), so our own recordings are verifiable like ``ros2 bag record``'s;
* :func:`iter_messages` reads a bag's messages in log-time order like ``Reader.messages()``,
  but chunk by chunk through the ``mcap`` package with CRC validation: a chunk that fails its
  CRC, cannot be decompressed or is not where the index says becomes one
  :class:`CorruptChunk` item (its message count per connection, from the MCAP message index)
  and reading continues with the next chunk, so callers count those messages as rejected
  with the reason ``corrupt_chunk`` instead of losing the rest of the bag;
* a summary whose CRC does not match raises :class:`BagError` at open (:func:`verify_bag`):
  with an untrustworthy chunk index nothing in the file can be located reliably.

Chunks written with CRC 0 by other tools cannot be checked; they are read as before and
counted in :attr:`ReadStats.unchecked_chunks` so ``inspect`` can say so. sqlite3 bags have no
checksums at all; the best available check is sqlite's own ``PRAGMA quick_check`` (structure,
not content), run by :func:`verify_bag`.
"""

from __future__ import annotations

import heapq
import io
import itertools
import logging
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from world_monitor.data.bag.errors import BagError

__all__ = [
    "CORRUPT_CHUNK",
    "MAX_CHUNK_BYTES",
    "CorruptChunk",
    "ReadStats",
    "iter_messages",
    "seal_mcap",
    "storage_files",
    "verify_bag",
]

log = logging.getLogger(__name__)

#: rejection key of every message inside a chunk that failed its integrity check
CORRUPT_CHUNK = "corrupt_chunk"
#: largest chunk (compressed or uncompressed) we decode; rosbag2 writes ~1-8 MB chunks. A
#: corrupt size field must not make us allocate gigabytes.
MAX_CHUNK_BYTES = 1 << 30

_MAGIC = b"\x89MCAP0\r\n"
_OP_CHUNK = 0x06
_OP_MESSAGE_INDEX = 0x07
_FOOTER_SIZE = 1 + 8 + 8 + 8 + 4  # opcode, length, summary_start, summary_offset_start, crc
_CHUNK_CRC_AT = 1 + 8 + 8 + 8 + 8  # opcode, length, start, end, uncompressed_size


@dataclass(frozen=True)
class CorruptChunk:
    """One MCAP chunk whose messages cannot be trusted.

    ``counts`` pairs each rosbags connection with how many of its messages the chunk held (from
    the message index, which lies outside the chunk); ``counts_known`` is False when that index
    is unreadable too (then the messages stay unaccounted and the caller reports a read error).
    """

    path: Path
    offset: int
    start_ns: int
    detail: str
    counts: tuple[tuple[Any, int], ...] = ()
    counts_known: bool = True

    @property
    def messages(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass
class ReadStats:
    """What :func:`iter_messages` could verify (filled while iterating)."""

    checked_chunks: int = 0
    unchecked_chunks: int = 0  # CRC 0 in the file: written by a tool that does not compute it
    corrupt_chunks: int = 0
    crc_checked: bool = False  # False for sqlite3, unindexed MCAP and per-message compression
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "crc_checked": self.crc_checked,
            "checked_chunks": self.checked_chunks,
            "unchecked_chunks": self.unchecked_chunks,
            "corrupt_chunks": self.corrupt_chunks,
            "notes": list(self.notes),
        }


# ---- files ------------------------------------------------------------------------------------


def storage_files(reader: Any) -> list[Path]:
    """The storage files (.mcap/.db3) an open rosbags ``Reader`` reads, in its order."""
    storage = getattr(reader, "storage", reader)
    storages = getattr(storage, "storages", None)
    if storages is None:
        storages = [storage]
    out = []
    for s in storages:
        p = getattr(s, "path", None)
        if p is not None:
            out.append(Path(p))
    return out


def _read_footer(f: Any, size: int) -> tuple[int, int]:
    """(summary_start, summary_crc) of an MCAP file; raises ValueError on a bad footer."""
    if size < len(_MAGIC) * 2 + _FOOTER_SIZE:
        raise ValueError("file too short for an MCAP footer")
    f.seek(size - len(_MAGIC) - _FOOTER_SIZE)
    tail = f.read(_FOOTER_SIZE + len(_MAGIC))
    if tail[-len(_MAGIC) :] != _MAGIC or tail[0] != 0x02:
        raise ValueError("MCAP footer or end magic is invalid")
    summary_start, _offsets, crc = struct.unpack_from("<QQI", tail, 9)
    return summary_start, crc


def _summary(path: Path) -> Any:
    """The parsed summary section of one MCAP file, or None when the file has none."""
    from mcap.reader import SeekingReader

    with path.open("rb") as f:
        return SeekingReader(f, validate_crcs=True).get_summary()


def seal_mcap(path: str | Path) -> int:
    """Write the chunk CRCs and the summary CRC into an MCAP file (in place); returns the number
    of chunks sealed. A file that already has CRCs is left unchanged (they are recomputed to
    the same value). Why in place: ``rosbags`` writes 0 into these fields and offers no option."""
    from mcap.data_stream import ReadDataStream
    from mcap.records import Chunk
    from mcap.stream_reader import get_chunk_data_stream

    p = Path(path)
    summary = _summary(p)
    if summary is None:
        return 0
    n = 0
    with p.open("r+b") as f:
        for ci in summary.chunk_indexes:
            f.seek(ci.chunk_start_offset + 9)
            chunk = Chunk.read(ReadDataStream(io.BytesIO(f.read(ci.chunk_length - 9))))
            stream, length = get_chunk_data_stream(chunk, validate_crc=False)
            crc = zlib.crc32(stream.read(length))
            f.seek(ci.chunk_start_offset + _CHUNK_CRC_AT)
            f.write(struct.pack("<I", crc))
            n += 1
        size = f.seek(0, io.SEEK_END)
        summary_start, _ = _read_footer(f, size)
        if summary_start:
            crc_at = size - len(_MAGIC) - 4
            f.seek(summary_start)
            crc = zlib.crc32(f.read(crc_at - summary_start))
            f.seek(crc_at)
            f.write(struct.pack("<I", crc))
    return n


def _check_summary_crc(path: Path) -> None:
    with path.open("rb") as f:
        size = f.seek(0, io.SEEK_END)
        summary_start, crc = _read_footer(f, size)
        if not summary_start or not crc:
            return
        if not 0 < summary_start < size:
            raise ValueError(f"summary offset {summary_start} outside the file")
        f.seek(summary_start)
        actual = zlib.crc32(f.read(size - len(_MAGIC) - 4 - summary_start))
    if actual != crc:
        raise ValueError(
            f"summary section CRC mismatch (stored {crc:#010x}, computed {actual:#010x}): the "
            "chunk index and topic table cannot be trusted"
        )


def verify_bag(reader: Any, path: Path) -> None:
    """Whole-file checks at open: MCAP summary CRCs; sqlite3 ``PRAGMA quick_check``.

    Raises :class:`BagError` naming the file and what is corrupt.
    """
    for f in storage_files(reader):
        try:
            if f.suffix == ".mcap":
                _check_summary_crc(f)
            elif f.suffix == ".db3":
                _sqlite_check(f)
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 -- mcap/sqlite3/OS errors all mean "corrupt"
            raise BagError(path, f"{f.name} is corrupt: {exc}") from None


def _sqlite_check(f: Path) -> None:
    con = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
    try:
        rows = con.execute("PRAGMA quick_check(5)").fetchall()
    finally:
        con.close()
    problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
    if problems:
        raise BagError(
            f,
            "sqlite3 database is corrupt (PRAGMA quick_check: "
            + "; ".join(problems)
            + "); try `sqlite3 FILE .recover` on a copy",
        )


# ---- reading ----------------------------------------------------------------------------------


@dataclass(order=True)
class _Entry:
    start_ns: int
    file_index: int
    offset: int
    path: Path = field(compare=False)
    index: Any = field(compare=False)
    channels: dict[int, Any] = field(compare=False)


def _connection_map(reader: Any, summary: Any) -> dict[int, Any]:
    """MCAP channel id -> the rosbags connection ``Reader.messages()`` would yield for it."""
    by_key = {(c.topic, c.msgtype): c for c in reader.connections}
    out = {}
    for cid, ch in summary.channels.items():
        schema = summary.schemas.get(ch.schema_id)
        conn = by_key.get((ch.topic, schema.name if schema is not None else None))
        if conn is not None:
            out[cid] = conn
    return out


def _chunk_records(f: Any, path: Path, ci: Any, stats: ReadStats) -> list[Any]:
    """The records of one chunk, CRC-validated; raises ValueError (with why) when corrupt."""
    from mcap.data_stream import ReadDataStream
    from mcap.records import Chunk
    from mcap.stream_reader import breakup_chunk

    if ci.chunk_length > MAX_CHUNK_BYTES or ci.uncompressed_size > MAX_CHUNK_BYTES:
        raise ValueError(f"chunk of {ci.chunk_length} bytes exceeds {MAX_CHUNK_BYTES}")
    f.seek(ci.chunk_start_offset)
    rec = f.read(ci.chunk_length)
    if len(rec) != ci.chunk_length or rec[0] != _OP_CHUNK:
        raise ValueError("no chunk record where the chunk index points")
    chunk = Chunk.read(ReadDataStream(io.BytesIO(rec[9:])))
    if chunk.compression != ci.compression or len(chunk.data) != ci.compressed_size:
        raise ValueError("chunk header disagrees with the chunk index")
    if chunk.uncompressed_size != ci.uncompressed_size:
        raise ValueError("chunk size disagrees with the chunk index")
    if chunk.uncompressed_crc:
        stats.checked_chunks += 1
    else:
        stats.unchecked_chunks += 1
    return breakup_chunk(chunk, validate_crc=True)


def _index_counts(f: Any, ci: Any, channels: dict[int, Any]) -> tuple[tuple[Any, int], ...]:
    """Messages per connection of a chunk, from its MessageIndex records (bounded reads)."""
    counts = []
    for cid, offset in sorted(ci.message_index_offsets.items()):
        f.seek(offset)
        head = f.read(1 + 8 + 2 + 4)
        if len(head) != 15 or head[0] != _OP_MESSAGE_INDEX:
            raise ValueError("message index record missing")
        rec_cid, nbytes = struct.unpack_from("<HI", head, 9)
        if rec_cid != cid or nbytes % 16 or nbytes > MAX_CHUNK_BYTES:
            raise ValueError("message index record inconsistent")
        if cid in channels and nbytes:
            counts.append((channels[cid], nbytes // 16))
    return tuple(counts)


def iter_messages(
    reader: Any, path: Path, stats: ReadStats | None = None
) -> Iterator[tuple[Any, int, bytes] | CorruptChunk]:
    """``(connection, log_ns, raw)`` in log-time order, or a :class:`CorruptChunk` in place of
    a chunk that fails its checks (yielded at its start time, so log time never goes back).

    MCAP files with a chunk index are read through the ``mcap`` package with CRC validation;
    anything else (sqlite3, unindexed MCAP, per-message compression) falls back to
    ``reader.messages()`` unchanged. Raises :class:`BagError` when a summary is unreadable.
    """
    stats = stats if stats is not None else ReadStats()
    files = storage_files(reader)
    mode = getattr(reader, "compression_mode", None)
    if not files or any(f.suffix != ".mcap" for f in files) or mode == "message":
        yield from reader.messages()
        return
    entries: list[_Entry] = []
    for i, f in enumerate(files):
        try:
            summary = _summary(f)
        except Exception as exc:  # noqa: BLE001
            raise BagError(path, f"{f.name}: MCAP summary unreadable ({exc})") from None
        if summary is None or not summary.chunk_indexes:
            stats.notes.append(f"{f.name}: no chunk index, CRCs not checked")
            yield from reader.messages()
            return
        channels = _connection_map(reader, summary)
        entries.extend(
            _Entry(ci.message_start_time, i, ci.chunk_start_offset, f, ci, channels)
            for ci in summary.chunk_indexes
        )
    stats.crc_checked = True
    entries.sort()
    handles = {f: f.open("rb") for f in files}
    try:
        yield from _merge(entries, handles, stats)
    finally:
        for h in handles.values():
            h.close()


def _merge(
    entries: list[_Entry], handles: dict[Path, Any], stats: ReadStats
) -> Iterator[tuple[Any, int, bytes] | CorruptChunk]:
    """Heap merge of chunks by log time; a chunk is decoded only when its start time is due."""
    from mcap.records import Message

    heap: list[tuple[int, int, Any, bytes]] = []
    seq = itertools.count()
    i = 0
    while i < len(entries) or heap:
        while i < len(entries) and (not heap or entries[i].start_ns <= heap[0][0]):
            e = entries[i]
            i += 1
            f = handles[e.path]
            try:
                records = _chunk_records(f, e.path, e.index, stats)
            except Exception as exc:  # noqa: BLE001 -- CRC, zstd, lz4, parse errors
                stats.corrupt_chunks += 1
                detail = f"chunk at byte {e.offset} of {e.path.name}: {type(exc).__name__}: {exc}"
                try:
                    counts, known = _index_counts(f, e.index, e.channels), True
                except Exception:  # noqa: BLE001 -- the index may be damaged as well
                    counts, known = (), False
                log.warning("corrupt MCAP %s", detail)
                yield CorruptChunk(e.path, e.offset, e.start_ns, detail, counts, known)
                continue
            for rec in records:
                if isinstance(rec, Message) and rec.channel_id in e.channels:
                    item = (rec.log_time, next(seq), e.channels[rec.channel_id], rec.data)
                    heapq.heappush(heap, item)
        if heap:
            log_ns, _, conn, data = heapq.heappop(heap)
            yield conn, log_ns, data
