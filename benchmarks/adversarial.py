"""Adversarial bags: does every hostile input end as a clean error or a counted rejection?

    python benchmarks/adversarial.py [--n 200] [--seed 0] [--timeout-s 30] [--out DIR]
                                     [--jobs 1] [--classes a,b,...] [--keep-bags]

Why this exists (issue 14): each class of hostile bag below once produced a fail-open (the gate
opened on input the model never saw), a hang or a traceback. The unit tests pin one example
each; this script throws N randomised variants of every class at the two commands that read
untrusted recordings, ``world-monitor inspect --strict`` and ``world-monitor replay`` (the
shipped default bundle), each as a subprocess under a wall-clock bound, and classifies every run
by reading what the product wrote (exit code, stderr, ``summary.json``, the output MCAP).

How: one short in-distribution episode is simulated (``world-monitor simulate``) and exported
with the project's exporter (``world-monitor export-bag``). Its messages are re-written with
``rosbags`` into small MCAP chunks (8 messages each, sealed with the package's ``seal_mcap``), so
a corrupt chunk leaves the rest of the bag readable; that clean re-write is replayed once as the
**baseline** (the gate must open on it, otherwise "closed at the bad input" would prove nothing).
Case ``i`` belongs to class ``i mod #classes``, takes variant ``i div #classes`` (cycling) and
draws its parameters (position of the bad message, magnitude, which byte ...) from an RNG seeded
with ``(seed, i)``: the cases are deterministic and independent of N.

Outcomes of one case (the worst of its two runs, in this order):

* **hang**: a run hit ``--timeout-s``.
* **traceback**: ``Traceback`` in stderr, an exit code not in {0, 1, 2}, or an exit 1/2 whose
  last stderr line is not the documented one-line ``world-monitor CMD: error: ...``.
* **fail-open**: replay exited 0 and (a) the gate was open (lock False, or a decision other than
  STOP) at a decision or lock sample inside the *exposure window* of a bad input (below), or
  (b) the bad input was not reported at all (no rejection, gap or reason of the class's kinds),
  or (c) data that differs from the recording was accepted (a copied input message in replay's
  output MCAP that is not byte-identical to a message of the original bag), or (d) messages
  went missing without being reported (``messages.accounted`` false; for byte flips and
  truncation also fewer messages read than recorded with no corruption reported); or ``inspect --strict`` exited 0 on a bag with unusable messages (the case says
  so up front, or replay rejected messages at decoding / found a corrupt chunk, or replay refused
  the bag with a clean error).
* **clean error**: replay exited 2 with the one-line message (the bag was refused as a whole).
* **counted rejection**: replay exited 0, reported the bad input with a reason of the class's
  kinds (in ``messages.rejected_before_session``, ``session.accounting``, the decisions' reasons,
  ``clock.gaps`` or ``integrity.corrupt_chunks``) and the gate was closed (lock engaged, STOP)
  throughout every exposure window.
* **benign**: replay exited 0 on input that carries nothing wrong for the monitor, as
  documented: a zero header stamp (replay uses the log time, README/replay.py), or a byte flip /
  truncation that changed no message (every copied message byte-identical, every decision equal
  to the baseline's).

The exposure window of a bad input on topic T at log time t is [t, t') with t' the log time of
the next good message on T (end of bag if none). Inside it, every decision in
``summary.json`` (``session.decisions[].now``) must be STOP with the lock engaged, and so must
every ``/world_monitor/lock`` sample of the output MCAP with log time in (t, t'] that was written
before the copy of the message at t' (the heartbeat that fires just before the next good input
still sees the bad one). In the recording the camera frame at a step precedes that step's action
chunk (log times are equal), so the decision the chunk triggers at t comes after a bad frame at t.

Classes and what fail-open means for each (beyond the general rules above):

* ``absurd_actions``: chunks with every value 3.0 or 1e5, one point (or one value) at 3.0 in an
  otherwise normal chunk, random magnitudes, values just outside the bundle's training range
  (+-0.03 plus margin, manifest ``action_range``). Fail-open: the chunk is assessed (not
  rejected as ``action_out_of_range``) or the gate is open before the next good chunk.
* ``context_far_apart``: at start-up the first two context frames are 0.1 s and D s (30 s,
  or random 0.35-120 s) apart. Fail-open: the decision on the context (0.1 s, D) is open, or no
  ``context_gap`` is reported.
* ``clock_jump``: log time (and header stamps, or log time only) jumps by 1.76e9 s, 1e5 s or
  a random 10-1e9 s mid-episode. Fail-open: the first decision after the jump is open, or the
  gap is not reported in ``clock.gaps``; hang: the heartbeat walks the gap.
* ``huge_compressed``: CompressedImage stream with frames of 9000x9000 / 5000x5000 / 4097x4097
  PNG, an 8192x8192 JPEG, or PNG headers claiming 60000x60000 / 2^31-1 x 1. Fail-open: not
  ``too_large``, or the gate open; hang: the frame is decoded.
* ``raw_absurd_size``: raw Image headers claiming 100000x100000, 2^32-1 rows, zero width or
  height, a huge step, or 64x64 with 8x8 data. Fail-open: not ``too_large``/``bad_size``.
* ``malformed_frame``: encodings yuv422 / 16UC1 / bayer_rggb8 / 32FC1 / empty, a step shorter or
  longer than the data, truncated or padded data. Fail-open: not ``bad_encoding``/``bad_size``.
* ``non_finite``: NaN / +inf / -inf in one or all values of a chunk, a 32FC3 frame holding NaN.
  Fail-open: accepted, or the gate open.
* ``bad_stamps``: a header stamp that is zero (benign: replay uses the log time), equal to the
  previous one, older, negative, or far in the future. Fail-open: no ``out_of_order`` /
  ``future_stamp`` report, or the gate open on it.
* ``mcap_byte_flip``: one bit or byte flipped inside a chunk's data, a chunk record's header,
  the summary, the footer or anywhere. Fail-open: flipped data read as valid (a copied message
  differs from the original) or a corrupt chunk the gate stays open on.
* ``truncated_bag``: the MCAP cut at a random point, at a chunk boundary, inside the summary,
  one byte short, or to zero bytes; as a rosbag2 directory or a bare ``.mcap``. Fail-open:
  replay exits 0 with messages missing and nothing said.
* ``unreadable_message``: a frame's or chunk's payload replaced by random bytes, cut short,
  emptied, given a huge sequence length, a big-endian CDR header, or another type's bytes.
  Fail-open: ``inspect --strict`` exits 0, or replay does not reject it.

Prints the command, host, load average at start and end, the baseline, one row per class
(cases, outcomes, how many inspect runs exited 2, p50/max wall seconds of inspect + replay) and
a total row, then every case that failed with how to reproduce it. Writes ``cases.jsonl`` (one
record per case) to ``--out``. Exit code 1 if any case is fail-open, hang or traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hostile_images import jpeg, png, png_header_only  # noqa: E402  (shared with the tests)

from world_monitor.data.bag import META_TOPIC  # noqa: E402
from world_monitor.data.bag.codec import (
    COMPRESSED,
    IMAGE,
    MAX_IMAGE_PIXELS,
    TRAJECTORY,
    encode_compressed,
    get_store,
    ns_to_time,
    time_to_ns,
)
from world_monitor.data.bag.export import trajectory_msg
from world_monitor.data.bag.integrity import seal_mcap
from world_monitor.defaults import default_bundle
from world_monitor.replay.replay import LOCK_TOPIC

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper module
from hostinfo import cpu_model, load_avg  # noqa: E402

MONITOR_PREFIX = "/world_monitor/"
OUTPUT_ONLY = ("/diagnostics",)
CHUNK_MESSAGES = 8  # messages per MCAP chunk in the crafted bags
EPISODE_FRAMES = 30
FPS = 10.0
OUTCOMES = ("clean_error", "counted_rejection", "benign", "fail_open", "hang", "traceback")
BAD_OUTCOMES = ("fail_open", "hang", "traceback")
SEVERITY = {
    o: i for i, o in enumerate(("benign", "counted_rejection", "clean_error", *BAD_OUTCOMES))
}
#: rejection kinds of the bag layer (world_monitor.data.bag.codec / ros.convert / replay)
DECODE_KINDS = (
    "undeserializable",
    "malformed",
    "bad_size",
    "bad_encoding",
    "undecodable",
    "too_large",
    "ragged_chunk",
    "empty_chunk",
    "wrong_dim",
    "non_finite",
    "bad_layout",
    "bad_type",
)
_TOL_NS = 1_000  # decision times are float seconds: 1 us tolerance (1.76e9 s ~ 240 ns ulp)

# ------------------------------------------------------------------------------------------------
# messages and bags
# ------------------------------------------------------------------------------------------------


@dataclass
class Msg:
    topic: str
    msgtype: str
    log_ns: int
    raw: bytes


@dataclass
class Bad:
    """One crafted input: topic, log time, and the log time of the next good one on the topic."""

    topic: str
    log_ns: int
    end_ns: int | None


@dataclass
class Case:
    cid: int
    cls: str
    variant: str
    params: dict[str, Any]
    dir: Path
    bag: Path  # what the CLI is given (a rosbag2 directory or a bare .mcap)
    bad: list[Bad] = field(default_factory=list)
    evidence: tuple[str, ...] = ()  # report kinds that name this class's problem
    inspect_must_fail: bool = True
    benign_ok: bool = False  # documented accept (zero stamp)
    data_check: bool = False  # byte flips / truncation: accepted data must equal the original


class Base:
    """The exported episode, its messages, and helpers to rebuild messages."""

    def __init__(self, msgs: list[Msg], store: Any) -> None:
        self.msgs = msgs
        self.store = store
        self.t = store.types
        self.image_topic = next(m.topic for m in msgs if m.msgtype == IMAGE)
        self.action_topic = next(m.topic for m in msgs if m.msgtype == TRAJECTORY)
        self.image_idx = [i for i, m in enumerate(msgs) if m.topic == self.image_topic]
        self.action_idx = [i for i, m in enumerate(msgs) if m.topic == self.action_topic]
        self.n_steps = len(self.image_idx)
        #: log time -> step index (a step = one frame + its chunk, same log time)
        self.step_of = {msgs[i].log_ns: k for k, i in enumerate(self.image_idx)}
        self.topics = {m.topic for m in msgs}
        self.keys = Counter((m.topic, m.log_ns, m.raw) for m in msgs)

    def de(self, m: Msg) -> Any:
        return self.store.deserialize_cdr(m.raw, m.msgtype)

    def ser(self, msg: Any, msgtype: str) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msgtype))

    def header(self, like: Any, ns: int) -> Any:
        return self.t["std_msgs/msg/Header"](
            stamp=ns_to_time(self.store, ns), frame_id=like.frame_id
        )

    def raw_image(
        self,
        like: Any,
        *,
        height: int,
        width: int,
        encoding: str,
        step: int,
        data: np.ndarray,
        stamp_ns: int | None = None,
    ) -> bytes:
        header = like.header if stamp_ns is None else self.header(like.header, stamp_ns)
        msg = self.t[IMAGE](
            header=header,
            height=int(height),
            width=int(width),
            encoding=encoding,
            is_bigendian=0,
            step=int(step),
            data=np.ascontiguousarray(data, dtype=np.uint8).reshape(-1),
        )
        return self.ser(msg, IMAGE)

    def compressed(self, like: Any, data: bytes, fmt: str) -> bytes:
        msg = self.t[COMPRESSED](header=like.header, format=fmt, data=np.frombuffer(data, np.uint8))
        return self.ser(msg, COMPRESSED)

    def chunk(self, like: Any, chunk: np.ndarray, stamp_ns: int | None = None) -> bytes:
        header = like.header if stamp_ns is None else self.header(like.header, stamp_ns)
        msg = trajectory_msg(self.store, header, list(like.joint_names), chunk, FPS)
        return self.ser(msg, TRAJECTORY)

    def chunk_array(self, m: Msg) -> np.ndarray:
        return np.array([np.asarray(p.positions, np.float64) for p in self.de(m).points])


def read_bag(path: Path) -> list[Msg]:
    """Every message of a bag in log-time order; at equal log times meta, frame, then chunk (the
    exporter's write order)."""
    from rosbags.rosbag2 import Reader

    rank = {META_TOPIC: 0}
    out = []
    with Reader(path) as reader:
        for conn, ns, raw in reader.messages():
            out.append(Msg(conn.topic, conn.msgtype, int(ns), bytes(raw)))
    kinds = {IMAGE: 1, COMPRESSED: 1, TRAJECTORY: 2}
    out.sort(key=lambda m: (m.log_ns, rank.get(m.topic, kinds.get(m.msgtype, 3))))
    return out


def write_bag(
    path: Path, msgs: Sequence[Msg], store: Any, chunk_messages: int = CHUNK_MESSAGES
) -> Path:
    """A sealed rosbag2 MCAP directory with the messages in the given order, ``chunk_messages``
    per chunk (the rosbags writer closes chunks at 1 MiB only; its ``close_chunk`` is private,
    so without it the bag is written as one chunk)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    conns: dict[str, Any] = {}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        for m in msgs:
            if m.topic not in conns:
                conns[m.topic] = w.add_connection(m.topic, m.msgtype, typestore=store)
        storage = getattr(w, "storage", None)
        for i, m in enumerate(msgs):
            w.write(conns[m.topic], m.log_ns, m.raw)
            if chunk_messages and (i + 1) % chunk_messages == 0 and i + 1 < len(msgs):
                pending = getattr(storage, "chunk", None)
                if pending is not None and getattr(pending, "msgs", None):
                    storage.close_chunk()
    for f in path.glob("*.mcap"):
        seal_mcap(f)
    return path


def mcap_of(bag_dir: Path) -> Path:
    return next(bag_dir.glob("*.mcap"))


# ------------------------------------------------------------------------------------------------
# crafting helpers
# ------------------------------------------------------------------------------------------------


_BIG_IMAGES: dict[str, tuple[bytes, str]] = {}
_BIG_LOCK = threading.Lock()


def big_image(name: str) -> tuple[bytes, str]:
    """(bytes, format) of a named oversized frame, made once per process."""
    makers: dict[str, Callable[[], tuple[bytes, str]]] = {
        "png_9000x9000": lambda: (png(9000, 9000, level=9), "png"),
        "png_5000x5000": lambda: (png(5000, 5000, level=9), "png"),
        "png_4097x4097": lambda: (png(4097, 4097, level=9), "png"),
        "jpeg_8192x8192": lambda: (jpeg(8192, 8192), "jpeg"),
        "png_header_60000x60000": lambda: (png_header_only(60000, 60000), "png"),
        "png_header_2147483647x1": lambda: (png_header_only(1, 2**31 - 1), "png"),
    }
    with _BIG_LOCK:
        if name not in _BIG_IMAGES:
            _BIG_IMAGES[name] = makers[name]()
        return _BIG_IMAGES[name]


def _next_good(msgs: Sequence[Msg], topic: str, after: int, bad: set[int]) -> int | None:
    for j in range(after + 1, len(msgs)):
        if msgs[j].topic == topic and j not in bad:
            return msgs[j].log_ns
    return None


def _bads(msgs: Sequence[Msg], idx: Sequence[int]) -> list[Bad]:
    s = set(idx)
    return [Bad(msgs[i].topic, msgs[i].log_ns, _next_good(msgs, msgs[i].topic, i, s)) for i in idx]


def _pick_steps(rng: np.random.Generator, base: Base, lo: int = 2, count: int = 1) -> list[int]:
    """``count`` consecutive step indices starting at a random step >= lo."""
    start = int(rng.integers(lo, base.n_steps - count + 1))
    return list(range(start, start + count))


# ------------------------------------------------------------------------------------------------
# case generators: (case, rng, base) -> list of messages to write (or None: the generator wrote
# the bag itself); each fills case.bad / evidence / flags
# ------------------------------------------------------------------------------------------------

Gen = Callable[[Case, np.random.Generator, Base], list[Msg] | None]


def gen_absurd_actions(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    msgs = list(base.msgs)
    steps = _pick_steps(rng, base, count=int(rng.integers(1, 4)))
    idx = [base.action_idx[s] for s in steps]
    for i in idx:
        m = msgs[i]
        chunk = base.chunk_array(m)
        h, a = int(rng.integers(chunk.shape[0])), int(rng.integers(chunk.shape[1]))
        sign = float(rng.choice([-1.0, 1.0]))
        v = case.variant
        if v == "all_3.0":
            chunk[:] = 3.0
        elif v == "all_1e5":
            chunk[:] = 1e5 * sign
        elif v == "one_point_3.0":
            chunk[h, :3] = 3.0 * sign
        elif v == "one_value_3.0":
            chunk[h, a] = 3.0 * sign
        elif v == "random_magnitude":
            mag = 10 ** rng.uniform(math.log10(0.05), 6)
            chunk[:, :3] = rng.choice([-1.0, 1.0], size=(chunk.shape[0], 3)) * mag
        elif v == "just_outside":  # past max + margin (0.036) or the gripper's -1 +- 0.1
            if a == 3:
                chunk[h, a] = -1.0 + sign * 0.1 * (1 + rng.uniform(0.02, 0.5))
            else:
                chunk[h, a] = sign * 0.036 * (1 + rng.uniform(0.02, 0.5))
        else:
            raise ValueError(v)
        case.params.setdefault("steps", steps)
        case.params.setdefault("at", [h, a])
        msgs[i] = dataclasses.replace(m, raw=base.chunk(base.de(m), chunk))
    case.bad = _bads(msgs, idx)
    case.evidence = ("action_out_of_range",)
    case.inspect_must_fail = False  # inspect does not know the bundle's range
    return msgs


def gen_context_far_apart(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    """Step 0 at 0.1 s, step 1 at D s, the rest 0.1 s apart after it (log times = stamps)."""
    d = {
        "30s": 30.0,
        "short": float(rng.uniform(0.35, 4.9)),
        "long": float(rng.uniform(5.5, 120.0)),
    }[case.variant]
    case.params["second_frame_s"] = round(d, 6)
    t0 = 100_000_000
    msgs = []
    for m in base.msgs:
        step = base.step_of[m.log_ns]
        ns = t0 if step == 0 else round(d * 1e9) + (step - 1) * 100_000_000
        msgs.append(_restamp(base, m, ns, ns))
    i = base.image_idx[1]
    case.bad = _bads(msgs, [i])
    case.evidence = ("context_gap",)
    case.inspect_must_fail = False  # every message is well-formed
    return msgs


def _restamp(base: Base, m: Msg, log_ns: int, stamp_ns: int | None) -> Msg:
    """``m`` at another log time, and (``stamp_ns`` given) another header stamp."""
    if stamp_ns is None or m.topic == META_TOPIC:
        return dataclasses.replace(m, log_ns=log_ns)
    msg = base.de(m)
    msg = dataclasses.replace(msg, header=base.header(msg.header, stamp_ns))
    return Msg(m.topic, m.msgtype, log_ns, base.ser(msg, m.msgtype))


def gen_clock_jump(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    size, mode = case.variant.split("/")
    jump = {"1.76e9": 1.76e9, "1e5": 1e5, "random": float(10 ** rng.uniform(1, 9))}[size]
    k = int(rng.integers(3, base.n_steps - 1))
    case.params.update(jump_s=jump, at_step=k, mode=mode)
    jump_ns = round(jump * 1e9)
    msgs = []
    for m in base.msgs:
        step = base.step_of[m.log_ns]
        if step < k:
            msgs.append(m)
            continue
        stamp = m.log_ns + jump_ns if mode == "stamps_too" else None
        msgs.append(_restamp(base, m, m.log_ns + jump_ns, stamp))
    case.bad = _bads(msgs, [base.image_idx[k]])
    case.evidence = ("clock_gap",)
    case.inspect_must_fail = False
    return msgs


def _compressed_stream(base: Base) -> list[Msg]:
    msgs = []
    for m in base.msgs:
        if m.msgtype == IMAGE:
            msg = base.de(m)
            rgb = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
            raw = base.compressed(msg, encode_compressed(rgb, "png"), "png")
            msgs.append(Msg(m.topic, COMPRESSED, m.log_ns, raw))
        else:
            msgs.append(m)
    return msgs


_COMPRESSED_BASE: list[Msg] | None = None


def gen_huge_compressed(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    global _COMPRESSED_BASE
    with _BIG_LOCK:
        if _COMPRESSED_BASE is None:
            _COMPRESSED_BASE = _compressed_stream(base)
    msgs = list(_COMPRESSED_BASE)
    steps = sorted(set(int(s) for s in rng.integers(2, base.n_steps, size=int(rng.integers(1, 4)))))
    data, fmt = big_image(case.variant)
    idx = [base.image_idx[s] for s in steps]
    for i in idx:
        m = msgs[i]
        msgs[i] = dataclasses.replace(m, raw=base.compressed(base.de(m), data, fmt))
    case.params.update(steps=steps, bytes=len(data))
    case.bad = _bads(msgs, idx)
    case.evidence = ("too_large",)
    return msgs


def _replace_image(
    case: Case, rng: np.random.Generator, base: Base, make: Callable[[Any], bytes]
) -> list[Msg]:
    msgs = list(base.msgs)
    steps = _pick_steps(rng, base, count=int(rng.integers(1, 3)))
    idx = [base.image_idx[s] for s in steps]
    for i in idx:
        msgs[i] = dataclasses.replace(msgs[i], raw=make(base.de(msgs[i])))
    case.params["steps"] = steps
    case.bad = _bads(msgs, idx)
    return msgs


def gen_raw_absurd_size(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    small = np.asarray(rng.integers(0, 256, 64 * 64 * 3), np.uint8)
    v = case.variant

    def make(like: Any) -> bytes:
        if v == "claims_100000x100000":
            return base.raw_image(
                like, height=100000, width=100000, encoding="rgb8", step=300000, data=small
            )
        if v == "claims_uint32max_rows":
            return base.raw_image(
                like, height=2**32 - 1, width=64, encoding="rgb8", step=192, data=small
            )
        if v == "zero_width":
            return base.raw_image(like, height=64, width=0, encoding="rgb8", step=0, data=small[:0])
        if v == "zero_height":
            return base.raw_image(
                like, height=0, width=64, encoding="rgb8", step=192, data=small[:0]
            )
        if v == "huge_step":
            return base.raw_image(
                like, height=64, width=64, encoding="rgb8", step=2**32 - 1, data=small
            )
        if v == "claims_64x64_has_8x8":
            return base.raw_image(
                like, height=64, width=64, encoding="rgb8", step=192, data=small[:192]
            )
        if v == "just_over_budget":  # within uint32, a header just over MAX_IMAGE_PIXELS
            side = math.isqrt(MAX_IMAGE_PIXELS) + 1
            return base.raw_image(
                like, height=side, width=side, encoding="mono8", step=side, data=small
            )
        raise ValueError(v)

    msgs = _replace_image(case, rng, base, make)
    case.evidence = ("too_large", "bad_size")
    return msgs


def gen_malformed_frame(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    v = case.variant
    cut = float(rng.uniform(0.05, 0.95))
    extra = int(rng.integers(1, 4096))
    dstep = int(rng.integers(1, 64))

    def make(like: Any) -> bytes:
        h, w = int(like.height), int(like.width)
        data = np.asarray(like.data, np.uint8)
        enc = {"yuv422": 2, "16UC1": 2, "bayer_rggb8": 1, "32FC1": 4, "empty_encoding": 3}
        if v in enc:
            ch = enc[v]
            buf = np.resize(data, h * w * ch)
            return base.raw_image(
                like,
                height=h,
                width=w,
                encoding="" if v == "empty_encoding" else v,
                step=w * ch,
                data=buf,
            )
        if v == "step_too_short":
            return base.raw_image(
                like,
                height=h,
                width=w,
                encoding="rgb8",
                step=w * 3 - dstep,
                data=data[: h * (w * 3 - dstep)],
            )
        if v == "step_too_long":
            return base.raw_image(
                like, height=h, width=w, encoding="rgb8", step=w * 3 + dstep, data=data
            )
        if v == "truncated_data":
            return base.raw_image(
                like,
                height=h,
                width=w,
                encoding="rgb8",
                step=w * 3,
                data=data[: int(data.size * cut)],
            )
        if v == "padded_data":
            pad = np.concatenate([data, np.zeros(extra, np.uint8)])
            return base.raw_image(like, height=h, width=w, encoding="rgb8", step=w * 3, data=pad)
        raise ValueError(v)

    msgs = _replace_image(case, rng, base, make)
    case.params.update(cut=round(cut, 3), extra=extra, dstep=dstep)
    case.evidence = ("bad_encoding", "bad_size")
    return msgs


def gen_non_finite(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    v = case.variant
    if v == "nan_frame_32FC3":

        def make(like: Any) -> bytes:
            h, w = int(like.height), int(like.width)
            arr = np.asarray(like.data, np.uint8).reshape(h, w, 3).astype(np.float32) / 255.0
            arr[rng.random((h, w)) < 0.1] = np.nan
            return base.raw_image(
                like, height=h, width=w, encoding="32FC3", step=w * 12, data=arr.view(np.uint8)
            )

        msgs = _replace_image(case, rng, base, make)
        case.evidence = ("bad_encoding", "non_finite", "non_finite_input")
        return msgs
    msgs = list(base.msgs)
    steps = _pick_steps(rng, base, count=int(rng.integers(1, 3)))
    idx = [base.action_idx[s] for s in steps]
    value = {"nan_one": np.nan, "inf_one": np.inf, "neg_inf_one": -np.inf, "nan_all": np.nan}[v]
    for i in idx:
        chunk = base.chunk_array(msgs[i])
        if v == "nan_all":
            chunk[:] = value
        else:
            chunk[int(rng.integers(chunk.shape[0])), int(rng.integers(chunk.shape[1]))] = value
        msgs[i] = dataclasses.replace(msgs[i], raw=base.chunk(base.de(msgs[i]), chunk))
    case.params["steps"] = steps
    case.bad = _bads(msgs, idx)
    case.evidence = ("non_finite", "non_finite_input")
    return msgs


def gen_bad_stamps(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    kind, stream = case.variant.split("/")
    msgs = list(base.msgs)
    index = base.image_idx if stream == "image" else base.action_idx
    k = int(rng.integers(2, base.n_steps))
    i = index[k]
    prev_stamp = time_to_ns(base.de(msgs[index[k - 1]]).header.stamp)
    if kind == "zero":
        stamp = 0
    elif kind == "duplicate":
        stamp = prev_stamp
    elif kind == "backwards":
        stamp = prev_stamp - round(10 ** rng.uniform(-3, 1) * 1e9)
    elif kind == "negative":
        stamp = -round(10 ** rng.uniform(0, 9) * 1e9)
    elif kind == "far_future":
        stamp = msgs[i].log_ns + round(10 ** rng.uniform(1, 9) * 1e9)
    else:
        raise ValueError(kind)
    case.params.update(step=k, stamp_ns=stamp)
    msgs[i] = _restamp(base, msgs[i], msgs[i].log_ns, stamp)
    if kind == "zero":
        case.benign_ok = True
        case.inspect_must_fail = False
        case.evidence = ()
        return msgs
    case.bad = _bads(msgs, [i])
    case.evidence = ("out_of_order_stamp", "out_of_order", "duplicate_stamp", "future_stamp")
    # a far-future stamp is itself in order; the messages after it are not (if there are any)
    case.inspect_must_fail = kind != "far_future" or k < base.n_steps - 1
    return msgs


def _chunk_regions(path: Path) -> list[Any]:
    from mcap.reader import make_reader

    with path.open("rb") as f:
        return sorted(
            make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset
        )


def gen_mcap_byte_flip(case: Case, rng: np.random.Generator, base: Base) -> None:
    bag = write_bag(case.dir / "bag", base.msgs, base.store)
    f = mcap_of(bag)
    data = bytearray(f.read_bytes())
    chunks = _chunk_regions(f)
    v = case.variant
    ci = chunks[int(rng.integers(len(chunks)))]
    summary_start = struct.unpack_from("<Q", data, len(data) - 8 - 29 + 9)[0]
    if v.endswith("in_chunk_data"):
        lo = ci.chunk_start_offset + ci.chunk_length - ci.compressed_size
        hi = ci.chunk_start_offset + ci.chunk_length
    elif v == "byte_in_chunk_header":
        lo, hi = ci.chunk_start_offset, ci.chunk_start_offset + ci.chunk_length - ci.compressed_size
    elif v == "byte_in_summary":
        lo, hi = summary_start, len(data) - 8 - 29
    elif v == "byte_in_footer":
        lo, hi = len(data) - 8 - 29, len(data)
    else:  # anywhere
        lo, hi = 0, len(data)
    off = int(rng.integers(lo, hi))
    mask = 1 << int(rng.integers(8)) if v.startswith("bit") else int(rng.integers(1, 256))
    data[off] ^= mask
    f.write_bytes(bytes(data))
    hit = next(
        (c for c in chunks if c.chunk_start_offset <= off < c.chunk_start_offset + c.chunk_length),
        None,
    )
    case.params.update(
        offset=off,
        mask=mask,
        file_bytes=len(data),
        chunk=None if hit is None else chunks.index(hit),
    )
    case.bag = bag
    case.evidence = ("corrupt_chunk", *DECODE_KINDS)
    case.data_check = True  # the bad inputs are the messages replay did not pass on (see analyse)
    case.inspect_must_fail = False  # decided from replay's report (a harmless flip passes)
    return None


def gen_truncated_bag(case: Case, rng: np.random.Generator, base: Base) -> None:
    bag = write_bag(case.dir / "bag", base.msgs, base.store)
    f = mcap_of(bag)
    data = f.read_bytes()
    where, form = case.variant.split("/")
    chunks = _chunk_regions(f)
    summary_start = struct.unpack_from("<Q", data, len(data) - 8 - 29 + 9)[0]
    if where == "random":
        cut = int(rng.integers(1, len(data)))
    elif where == "chunk_boundary":
        c = chunks[int(rng.integers(len(chunks)))]
        cut = c.chunk_start_offset + c.chunk_length
    elif where == "in_summary":
        cut = int(rng.integers(summary_start, len(data)))
    elif where == "one_byte_short":
        cut = len(data) - 1
    elif where == "empty":
        cut = 0
    else:
        raise ValueError(where)
    case.params.update(cut=cut, file_bytes=len(data))
    if form == "dir":
        f.write_bytes(data[:cut])
        case.bag = bag
    else:  # a bare .mcap with no metadata.yaml beside it
        bare = case.dir / "bare"
        bare.mkdir()
        (bare / f.name).write_bytes(data[:cut])
        shutil.rmtree(bag)
        case.bag = bare / f.name
    case.evidence = ("corrupt_chunk", *DECODE_KINDS)
    case.data_check = True
    case.inspect_must_fail = False  # decided from replay's report
    return None


def gen_unreadable_message(case: Case, rng: np.random.Generator, base: Base) -> list[Msg]:
    kind, stream = case.variant.split("/")
    msgs = list(base.msgs)
    index = base.image_idx if stream == "image" else base.action_idx
    k = int(rng.integers(2, base.n_steps))
    i = index[k]
    raw = msgs[i].raw
    if kind == "random_bytes":
        new = rng.bytes(int(rng.integers(1, 4096)))
    elif kind == "truncated_cdr":
        new = raw[: int(rng.integers(4, len(raw)))]
    elif kind == "empty":
        new = b""
    elif kind == "huge_length":
        b = bytearray(raw)
        if stream == "image":  # data is the last field: uint32 length right before it
            msg = base.de(msgs[i])
            at = len(raw) - len(np.asarray(msg.data)) - 4
        else:  # points is the last field: its count is where an empty-points message ends
            msg = base.de(msgs[i])
            at = len(base.ser(dataclasses.replace(msg, points=[]), TRAJECTORY)) - 4
        struct.pack_into("<I", b, at, int(rng.choice([2**31 - 1, 2**32 - 1, 2**28])))
        new = bytes(b)
    elif kind == "big_endian_header":
        new = b"\x00\x00" + raw[2:]
    elif kind == "other_type":
        other = base.action_idx[k] if stream == "image" else base.image_idx[k]
        new = msgs[other].raw
    else:
        raise ValueError(kind)
    msgs[i] = dataclasses.replace(msgs[i], raw=new)
    case.params.update(step=k, bytes=len(new))
    case.bad = _bads(msgs, [i])
    case.evidence = DECODE_KINDS
    return msgs


CLASSES: dict[str, tuple[Gen, tuple[str, ...]]] = {
    "absurd_actions": (
        gen_absurd_actions,
        (
            "all_3.0",
            "all_1e5",
            "one_point_3.0",
            "one_value_3.0",
            "random_magnitude",
            "just_outside",
        ),
    ),
    "context_far_apart": (gen_context_far_apart, ("30s", "short", "long")),
    "clock_jump": (
        gen_clock_jump,
        tuple(f"{s}/{m}" for s in ("1.76e9", "1e5", "random") for m in ("stamps_too", "log_only")),
    ),
    "huge_compressed": (
        gen_huge_compressed,
        (
            "png_9000x9000",
            "png_header_60000x60000",
            "png_5000x5000",
            "jpeg_8192x8192",
            "png_4097x4097",
            "png_header_2147483647x1",
        ),
    ),
    "raw_absurd_size": (
        gen_raw_absurd_size,
        (
            "claims_100000x100000",
            "claims_uint32max_rows",
            "zero_width",
            "zero_height",
            "huge_step",
            "claims_64x64_has_8x8",
            "just_over_budget",
        ),
    ),
    "malformed_frame": (
        gen_malformed_frame,
        (
            "yuv422",
            "16UC1",
            "bayer_rggb8",
            "32FC1",
            "empty_encoding",
            "step_too_short",
            "step_too_long",
            "truncated_data",
            "padded_data",
        ),
    ),
    "non_finite": (
        gen_non_finite,
        ("nan_one", "inf_one", "neg_inf_one", "nan_all", "nan_frame_32FC3"),
    ),
    "bad_stamps": (
        gen_bad_stamps,
        tuple(
            f"{k}/{s}"
            for k in ("backwards", "zero", "duplicate", "negative", "far_future")
            for s in ("image", "actions")
        ),
    ),
    "mcap_byte_flip": (
        gen_mcap_byte_flip,
        (
            "bit_in_chunk_data",
            "byte_in_chunk_data",
            "byte_in_chunk_header",
            "byte_in_summary",
            "byte_in_footer",
            "bit_anywhere",
            "byte_anywhere",
        ),
    ),
    "truncated_bag": (
        gen_truncated_bag,
        tuple(
            f"{w}/{f}"
            for w in ("random", "chunk_boundary", "in_summary", "one_byte_short", "empty")
            for f in ("dir", "bare")
        ),
    ),
    "unreadable_message": (
        gen_unreadable_message,
        tuple(
            f"{k}/{s}"
            for k in (
                "random_bytes",
                "truncated_cdr",
                "empty",
                "huge_length",
                "big_endian_header",
                "other_type",
            )
            for s in ("image", "actions")
        ),
    ),
}


def plan(n: int, seed: int, classes: Sequence[str], root: Path) -> list[Case]:
    """Case i: class i mod len(classes), variant (i div len(classes)) cycling."""
    cases = []
    for i in range(n):
        cls = classes[i % len(classes)]
        variants = CLASSES[cls][1]
        variant = variants[(i // len(classes)) % len(variants)]
        d = root / "cases" / f"{i:04d}_{cls}"
        cases.append(Case(i, cls, variant, {}, d, d / "bag"))
    return cases


def build(case: Case, seed: int, base: Base) -> None:
    if case.dir.exists():
        shutil.rmtree(case.dir)
    case.dir.mkdir(parents=True)
    rng = np.random.default_rng([seed, case.cid])
    msgs = CLASSES[case.cls][0](case, rng, base)
    if msgs is not None:
        write_bag(case.bag, msgs, base.store)


# ------------------------------------------------------------------------------------------------
# running and classifying
# ------------------------------------------------------------------------------------------------


def wm_command() -> list[str]:
    exe = Path(sys.executable).with_name("world-monitor")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "world_monitor.cli"]


@dataclass
class Run:
    cmd: list[str]
    rc: int | None
    wall_s: float
    stdout: str
    stderr: str
    timed_out: bool


def run_cmd(cmd: list[str], timeout_s: float, cwd: Path) -> Run:
    """Run ``cmd`` in its own process group; on timeout the whole group is killed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return Run(cmd, proc.returncode, time.perf_counter() - t0, out, err, False)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Run(cmd, None, time.perf_counter() - t0, out or "", err or "", True)


def process_outcome(run: Run, name: str) -> tuple[str, str]:
    """('hang'|'traceback'|'clean_error'|'ok', note) from exit code and stderr alone."""
    if run.timed_out:
        return "hang", f"{name}: no exit within the bound ({run.wall_s:.1f} s)"
    if "Traceback" in run.stderr:
        return "traceback", f"{name}: rc {run.rc}, Traceback in stderr"
    if run.rc not in (0, 1, 2):
        return "traceback", f"{name}: exit code {run.rc} (documented: 0, 2)"
    if run.rc == 0:
        return "ok", ""
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    prefix = f"world-monitor {name}: error: "
    errors = [ln for ln in lines if ln.startswith(prefix)]
    if not lines or not lines[-1].startswith(prefix) or len(errors) != 1:
        return "traceback", f"{name}: rc {run.rc} without the one-line error message"
    return "clean_error", lines[-1][len(prefix) :][:300]


def read_output_bag(out_dir: Path) -> list[tuple[str, int, bytes]]:
    """(topic, log ns, data) of replay's output MCAP in file (= write) order."""
    from mcap.reader import make_reader

    seq = []
    for f in sorted(out_dir.glob("*.mcap")):
        with f.open("rb") as fh:
            for _, channel, message in make_reader(fh).iter_messages(log_time_order=False):
                seq.append((channel.topic, int(message.log_time), bytes(message.data)))
    return seq


def _in_window(ns: int, bad: Bad) -> bool:
    return ns >= bad.log_ns - _TOL_NS and (bad.end_ns is None or ns < bad.end_ns - _TOL_NS)


def reported_kinds(s: dict[str, Any], windows: Sequence[Bad]) -> set[str]:
    """Every kind of problem replay's summary names: rejections (both layers), corrupt chunks,
    clock gaps, context gaps, and the reasons of decisions inside the exposure windows."""
    kinds: set[str] = set()
    for stream in s["messages"]["rejected_before_session"].values():
        kinds.update(k for k, n in stream.items() if n)
    for stream in s["session"]["accounting"].values():
        kinds.update(k for k, n in (stream.get("rejected") or {}).items() if n)
    if s["integrity"].get("corrupt_chunks"):
        kinds.add("corrupt_chunk")
    if s["clock"]["gaps"]["count"]:
        kinds.add("clock_gap")
    if s["session"]["counts"].get("context_gaps"):
        kinds.add("context_gap")
    for d in s["session"]["decisions"]:
        ns = round(d["now"] * 1e9)
        if any(_in_window(ns, b) for b in windows):
            kinds.update(d.get("reasons") or [])
    return kinds


def gate_violations(
    s: dict[str, Any], seq: list[tuple[str, int, bytes]], bads: Sequence[Bad]
) -> list[str]:
    """Open gate inside an exposure window: decisions (summary) and lock samples (output MCAP).

    Lock samples count from the copy of the bad message in the output (or, for a message that
    was not copied, from the first record after its log time) up to the copy of the next good
    message on the topic: that stretch is what the robot would have seen while the bad input
    was the latest on its stream."""
    out = []
    for b in bads:
        for d in s["session"]["decisions"]:
            ns = round(d["now"] * 1e9)
            if _in_window(ns, b) and (not d["lock"] or d["effective_decision"] != "STOP"):
                out.append(
                    f"decision #{d['index']} at {d['now']:.3f} s is {d['effective_decision']} "
                    f"(lock {d['lock']}, {','.join(d['reasons'])}) after the bad {b.topic} message "
                    f"at {b.log_ns * 1e-9:.3f} s"
                )
        start = next(
            (p + 1 for p, (t, ns, _) in enumerate(seq) if t == b.topic and ns == b.log_ns), None
        )
        if start is None:
            start = next((p for p, (_, ns, _) in enumerate(seq) if ns > b.log_ns), len(seq))
        end = len(seq)
        if b.end_ns is not None:
            end = next(
                (
                    p
                    for p in range(start, len(seq))
                    if seq[p][0] == b.topic and seq[p][1] == b.end_ns
                ),
                len(seq),
            )
        for topic, ns, data in seq[start:end]:
            if topic == LOCK_TOPIC and (len(data) < 5 or data[4] == 0):
                out.append(
                    f"lock sample at {ns * 1e-9:.3f} s is open after the bad {b.topic} "
                    f"message at {b.log_ns * 1e-9:.3f} s"
                )
                break
    return out[:5]


def copied_inputs(seq: list[tuple[str, int, bytes]], base: Base) -> Counter:
    """The recording's topics as copied into replay's output: (topic, log ns, bytes) counts."""
    return Counter((t, ns, data) for t, ns, data in seq if t in base.topics)


def foreign_messages(copies: Counter, base: Base) -> list[str]:
    """Copied input messages that are not byte-identical to a message of the recording."""
    return [
        f"{t} at {ns * 1e-9:.3f} s differs from the recording"
        for (t, ns, data), n in copies.items()
        if base.keys.get((t, ns, data), 0) < n
    ][:5]


def _decisions_key(s: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            round(d["now"], 6),
            d["effective_decision"],
            d["lock"],
            None if d["risk"] is None else round(d["risk"], 9),
        )
        for d in s["session"]["decisions"]
    ]


def analyse_replay(
    case: Case, out_dir: Path, base: Base, baseline: dict[str, Any]
) -> tuple[str, str, dict[str, Any], list[Bad]]:
    """Classify a replay that exited 0 from its summary.json and output MCAP."""
    s = json.loads((out_dir / "summary.json").read_text())
    seq = read_output_bag(out_dir)
    bads = list(case.bad)
    copies = copied_inputs(seq, base)
    if case.data_check:  # the bad inputs are the recorded frames/chunks replay did not pass on
        missing = [
            i
            for i, m in enumerate(base.msgs)
            if m.topic in (base.image_topic, base.action_topic)
            and not copies.get((m.topic, m.log_ns, m.raw))
        ]
        bads = _bads(base.msgs, missing)
    info: dict[str, Any] = {
        "read": s["messages"]["read"],
        "kinds": sorted(reported_kinds(s, bads)),
        "decisions": s["session"]["counts"]["decisions"],
        "rejected_before_session": s["messages"]["rejected_before_session"],
        "corrupt_chunks": s["integrity"].get("corrupt_chunks", 0),
    }
    if not s["messages"]["accounted"]:
        return "fail_open", f"replay: messages unaccounted: {s['messages']['problems']}", info, bads
    problems = gate_violations(s, seq, bads)
    if problems:
        return "fail_open", "replay: gate open on bad input: " + "; ".join(problems), info, bads
    kinds = set(info["kinds"])
    if case.data_check:
        foreign = foreign_messages(copies, base)
        if foreign:
            return "fail_open", "replay: altered data accepted: " + "; ".join(foreign), info, bads
        if info["read"] < len(base.msgs) and not kinds & set(case.evidence):
            return (
                "fail_open",
                f"replay: read {info['read']} of {len(base.msgs)} messages, nothing reported",
                info,
                bads,
            )
    if case.evidence and kinds & set(case.evidence):
        return (
            "counted_rejection",
            "reported: " + ",".join(sorted(kinds & set(case.evidence))),
            info,
            bads,
        )
    if case.benign_ok:
        return "benign", "accepted as documented", info, bads
    if case.data_check:
        if _decisions_key(s) == _decisions_key(baseline) and sum(copies.values()) == len(base.msgs):
            return "benign", "no message changed, decisions equal the baseline's", info, bads
        return (
            "fail_open",
            "replay: decisions differ from the baseline and nothing was reported",
            info,
            bads,
        )
    return (
        "fail_open",
        f"replay: bad input not reported (reported kinds: {sorted(kinds) or 'none'})",
        info,
        bads,
    )


def run_case(
    case: Case, seed: int, base: Base, baseline: dict[str, Any], args: argparse.Namespace, cwd: Path
) -> dict[str, Any]:
    t_build = time.perf_counter()
    build(case, seed, base)
    build_s = time.perf_counter() - t_build
    wm = wm_command()
    ins = run_cmd([*wm, "inspect", "--strict", "--json", str(case.bag)], args.timeout_s, cwd)
    out_dir = case.dir / "out"
    rep = run_cmd(
        [*wm, "replay", str(case.bag), "--out", str(out_dir), "--overwrite", "--no-progress"],
        args.timeout_s,
        cwd,
    )
    i_out, i_note = process_outcome(ins, "inspect")
    r_out, r_note = process_outcome(rep, "replay")
    info: dict[str, Any] = {}
    bads = list(case.bad)
    if r_out == "ok":
        try:
            r_out, r_note, info, bads = analyse_replay(case, out_dir, base, baseline)
        except Exception as exc:  # noqa: BLE001 -- a missing/garbled output is the product's fault
            r_out = "fail_open"
            r_note = f"replay: exit 0 but its output is unreadable ({type(exc).__name__}: {exc})"
    if i_out == "ok":
        rejected = info.get("rejected_before_session", {})
        must = case.inspect_must_fail or any(rejected.get(k) for k in ("image", "actions"))
        must = (
            must or bool(info.get("corrupt_chunks")) or (case.data_check and r_out == "clean_error")
        )
        i_out, i_note = (
            ("fail_open", "inspect --strict exited 0 on a bag with unusable messages")
            if must
            else ("ok", "")
        )
    final, note = r_out, r_note
    if SEVERITY.get(i_out, -1) > SEVERITY[r_out] and i_out in BAD_OUTCOMES:
        final, note = i_out, i_note
    rec = {
        "case": case.cid,
        "class": case.cls,
        "variant": case.variant,
        "params": case.params,
        "bag": str(case.bag),
        "outcome": final,
        "note": note,
        "inspect": {"rc": ins.rc, "wall_s": round(ins.wall_s, 3), "outcome": i_out, "note": i_note},
        "replay": {
            "rc": rep.rc,
            "wall_s": round(rep.wall_s, 3),
            "outcome": r_out,
            "note": r_note,
            **info,
        },
        "bad": [dataclasses.asdict(b) for b in bads],
        "build_s": round(build_s, 3),
        "wall_s": round(ins.wall_s + rep.wall_s, 3),
        "baseline_open_in_window": baseline_open(baseline, bads),
    }
    if final in BAD_OUTCOMES:
        for name, r in (("inspect", ins), ("replay", rep)):
            (case.dir / f"{name}.stderr").write_text(r.stderr)
            (case.dir / f"{name}.stdout").write_text(r.stdout)
        rec["reproduce"] = [
            shlex.join(["world-monitor", *ins.cmd[-4:]]),
            shlex.join(["world-monitor", *rep.cmd[-6:]]),
        ]
    elif not args.keep_bags:
        shutil.rmtree(case.dir, ignore_errors=True)
    return rec


def baseline_open(baseline: dict[str, Any], bads: Sequence[Bad]) -> bool | None:
    """Whether the clean replay had the gate open at some decision in a window (None: no window
    or no decision there): a closed gate at the bad input then is the bad input's doing."""
    hits = [
        d["lock"] is False
        for d in baseline["session"]["decisions"]
        for b in bads
        if _in_window(round(d["now"] * 1e9), b)
    ]
    return any(hits) if hits else None


# ------------------------------------------------------------------------------------------------
# set-up
# ------------------------------------------------------------------------------------------------


def export_base(work: Path, seed: int, timeout_s: float) -> Path:
    """Simulate one in-distribution test episode and export it with ``world-monitor export-bag``."""
    wm = wm_command()
    data, bags = work / "dataset", work / "exported"
    overrides = [
        "data=small",
        f"sim.episode_length={EPISODE_FRAMES}",
        "data.splits.train=0",
        "data.splits.val=0",
        "data.splits.calib=0",
        "data.splits.test=1",
        "data.shift_test_per_family=0",
        f"seed={seed}",
    ]
    for cmd in (
        [*wm, "simulate", "--out", str(data), "--workers", "1", "--no-progress", *overrides],
        [
            *wm,
            "export-bag",
            str(data),
            str(bags),
            "--split",
            "test",
            "--shift",
            "none",
            "--limit",
            "1",
            "--no-progress",
        ],
    ):
        r = run_cmd(cmd, max(timeout_s, 300.0), work)
        if r.rc != 0:
            raise SystemExit(f"set-up failed: {shlex.join(cmd)} (rc {r.rc}):\n{r.stderr[-2000:]}")
    return next(p for p in sorted(bags.iterdir()) if (p / "metadata.yaml").is_file())


def run_baseline(work: Path, base: Base, timeout_s: float) -> dict[str, Any]:
    """Replay the clean re-written bag (also exports the bundle's ONNX graphs into work/engines
    once, so no case pays for it)."""
    bag = write_bag(work / "baseline", base.msgs, base.store)
    r = run_cmd(
        [
            *wm_command(),
            "replay",
            str(bag),
            "--out",
            str(work / "baseline_out"),
            "--overwrite",
            "--no-progress",
        ],
        max(timeout_s, 300.0),
        work,
    )
    if r.rc != 0:
        raise SystemExit(f"baseline replay failed (rc {r.rc}):\n{r.stderr[-2000:]}")
    s = json.loads((work / "baseline_out" / "summary.json").read_text())
    if s["lock"]["first_open"] is None:
        raise SystemExit(
            "the gate never opens on the clean baseline: closed-at-bad-input would prove nothing"
        )
    s["wall_s"] = r.wall_s
    return s


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def print_table(records: list[dict[str, Any]], classes: Sequence[str]) -> None:
    cols = ("clean_error", "counted_rejection", "benign", "fail_open", "hang", "traceback")
    print(
        "| class | cases | clean error | counted rejection | benign | fail-open | hang | traceback "
        "| inspect exit 2 | p50 s | max s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def row(name: str, recs: list[dict[str, Any]]) -> None:
        c = Counter(r["outcome"] for r in recs)
        walls = [r["wall_s"] for r in recs]
        i2 = sum(1 for r in recs if r["inspect"]["rc"] == 2)
        cells = " | ".join(str(c.get(k, 0)) for k in cols)
        print(
            f"| {name} | {len(recs)} | {cells} | {i2} | {_pct(walls, 50):.1f} | {max(walls, default=math.nan):.1f} |"
        )

    for cls in classes:
        recs = [r for r in records if r["class"] == cls]
        if recs:
            row(cls, recs)
    row("**total**", records)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=200, help="number of cases (spread over the classes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout-s", type=float, default=30.0, help="wall-clock bound per command")
    p.add_argument(
        "--out", type=Path, default=None, help="work directory (default: a temporary one)"
    )
    p.add_argument("--jobs", type=int, default=1, help="cases run in parallel")
    p.add_argument("--classes", default="", help=f"comma-separated subset of: {','.join(CLASSES)}")
    p.add_argument("--keep-bags", action="store_true", help="keep every case's bag and output")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    classes = [c for c in args.classes.split(",") if c] or list(CLASSES)
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        raise SystemExit(f"unknown classes {unknown}; known: {', '.join(CLASSES)}")
    if args.n < 1 or args.jobs < 1 or not args.timeout_s > 0:
        raise SystemExit("--n and --jobs must be >= 1 and --timeout-s > 0")
    argv_ = sys.argv[1:] if argv is None else argv
    print("# command: python benchmarks/adversarial.py " + " ".join(shlex.quote(a) for a in argv_))
    print(f"# host: {cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}")
    load_start = load_avg()
    print(f"# load average (1/5/15 min) at start: {load_start}", flush=True)
    tmp = None
    if args.out is None:
        tmp = Path(tempfile.mkdtemp(prefix="wm_adversarial_"))
        work = tmp
    else:
        work = args.out.resolve()
        work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    try:
        exported = export_base(work, args.seed, args.timeout_s)
        base = Base(read_bag(exported), get_store("jazzy"))
        baseline = run_baseline(work, base, args.timeout_s)
        dec = baseline["session"]["decisions"]
        n_open = sum(1 for d in dec if not d["lock"])
        print(
            f"# bundle: {default_bundle()} (shipped); base episode: {exported.name}, "
            f"{base.n_steps} frames at {FPS:.0f} Hz, {len(base.msgs)} messages, "
            f"{CHUNK_MESSAGES} per MCAP chunk"
        )
        print(
            f"# baseline (clean bag): {len(dec)} decisions, gate open at {n_open}, first open "
            f"{baseline['lock']['first_open']:.1f} s, replay {baseline['wall_s']:.1f} s wall"
        )
        print(
            f"# bound: {args.timeout_s:.0f} s per command; jobs {args.jobs}; seed {args.seed}",
            flush=True,
        )
        cases = plan(args.n, args.seed, classes, work)
        records: list[dict[str, Any]] = []
        bar = tqdm(total=len(cases), desc="adversarial", unit="case", disable=args.no_progress)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futs = [pool.submit(run_case, c, args.seed, base, baseline, args, work) for c in cases]
            for fut in as_completed(futs):
                rec = fut.result()
                records.append(rec)
                bar.set_postfix_str(f"bad {sum(r['outcome'] in BAD_OUTCOMES for r in records)}")
                bar.update(1)
        bar.close()
        records.sort(key=lambda r: r["case"])
        with (work / "cases.jsonl").open("w") as f:
            for r in records:
                f.write(json.dumps(r, default=str) + "\n")
        wall = time.perf_counter() - t_all
        print()
        print_table(records, classes)
        windowed = [r for r in records if r["baseline_open_in_window"] is not None]
        opened = sum(1 for r in windowed if r["baseline_open_in_window"])
        print(
            f"\n# exposure windows with a decision: {len(windowed)} cases; the clean replay had "
            f"the gate open there in {opened} (so a closed gate there is the bad input's doing)"
        )
        bad = [r for r in records if r["outcome"] in BAD_OUTCOMES]
        for r in bad:
            print(
                f"\n- case {r['case']} {r['class']}/{r['variant']} {json.dumps(r['params'], default=str)}"
            )
            print(f"  {r['outcome']}: {r['note']}")
            for line in r.get("reproduce", []):
                print(f"  reproduce: {line}")
        n_bad = len(bad)
        target = (
            "MET"
            if n_bad == 0 and len(records) >= 200
            else ("NOT MET" if n_bad else "n/a (N < 200)")
        )
        print(
            f"\n# fail-open + hang + traceback: {n_bad} of {len(records)}; target 0 at N >= 200: {target}"
        )
        print(
            f"# wall: {wall:.1f} s total; records: {work / 'cases.jsonl'}"
            + (" (temporary)" if tmp else "")
        )
        print(f"# load average (1/5/15 min) at end: {load_avg()}")
        return 1 if n_bad else 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
