"""Property tests over MonitorSession: hostile call sequences never raise and never open the gate.

Why (issue 14, "keep the adversary in the project"): a hand-written adversarial pass found that
the core survived every malformed input it tried *except* the ones nobody had thought of
(finite-but-absurd actions, context frames 30 s apart, ``decide(None)``). Hypothesis generates
such sequences on every CI run: random frames (valid, wrong size / dtype / channels, not arrays),
encodings, stamps (in order, repeated, backwards, 30 s gaps, NaN, Inf, None, strings, 1e300),
action chunks (in range, at the margin, 3.0, 1e5, one absurd point, NaN, Inf, float64 overflow,
wrong shapes and dtypes, lists, None) and clock values for ``tick`` / ``decide``.

Properties, after every call:

* no call raises, and each returns its documented type;
* a call that offers input outside the contract returns a closed gate (STOP, lock engaged);
* the gate is open (PROCEED) only on the risk of an accepted assessment at or below the SLOW
  threshold;
* the monitor is only ever asked to assess frames of the right shape/dtype, a finite chunk inside
  the bundle's action range, and a context spaced like the frame period (within tolerance);
* the input accounting adds up, the session's counters agree with its records, and the summary
  is strict JSON.

Bounded and deterministic (``derandomize=True``, no example database) so CI stays fast and a
failure reproduces; a small fake monitor (risk = brightness) keeps each example in milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from world_monitor.runtime.gate import GateConfig
from world_monitor.runtime.inputs import ActionRange
from world_monitor.runtime.session import DecisionResult, MonitorSession, SessionConfig
from world_monitor.runtime.types import Decision, GateStatus


def _load_fakes():
    path = Path(__file__).resolve().parents[1] / "ros" / "fakes.py"
    spec = importlib.util.spec_from_file_location("world_monitor_test_fakes", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("world_monitor_test_fakes", mod)
    spec.loader.exec_module(mod)
    return mod


fakes = _load_fakes()

HW, H, A, K = (16, 16), 4, 4, 2
PERIOD, TOLERANCE = 0.1, 0.5
SLOW, STOP = 0.5, 0.7
RANGE = ActionRange(np.array([-0.03] * 3 + [-1.0]), np.array([0.03] * 3 + [-1.0])).with_margin(
    np.array([0.006] * 3 + [0.1])
)
SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class _Monitor(fakes.FakeMonitor):
    """The fake plus the bundle contract the session enforces (range, frame period)."""

    def __init__(self) -> None:
        super().__init__(context_length=K, horizon=H, action_dim=A, image_size=HW)
        self.slow_threshold, self.stop_threshold = SLOW, STOP
        self.action_range = RANGE
        self.frame_period_s = PERIOD


# --------------------------------------------------------------------------- generated inputs
FRAME_KINDS = ["dark", "dark", "mid", "bright", "wrong_size", "float", "gray", "four_ch",
               "empty", "none", "str", "list"]  # fmt: skip
GOOD_FRAMES = {"dark", "mid", "bright"}
ENCODINGS = [None, None, "rgb8", "bgr8", "mono8", "", 123]
GOOD_ENCODINGS = {None, "rgb8", "bgr8"}
CHUNK_KINDS = ["ok", "ok", "edge", "list", "all3", "1e5", "one_point", "neg_huge", "gripper",
               "nan", "inf", "f64_overflow", "short", "wide", "int", "bool", "object", "none",
               "str", "ragged", "3d"]  # fmt: skip
GOOD_CHUNKS = {"ok", "edge", "list"}
STEPS = ["next", "next", "next", "jitter", "same", "back", "gap", "fast"]
BAD_TIMES = ["nan", "inf", "-inf", "none", "str", "bool", "list", "huge"]


def _frame(kind: str, ident: int) -> Any:
    value = {"dark": 20, "mid": 140, "bright": 240}.get(kind)
    if value is not None:
        f = np.full((*HW, 3), value, np.uint8)
        # which offer this frame was, readable whether or not bgr8 swaps channels 0 and 2
        f[0, 0] = (ident % 256, ident // 256, ident % 256)
        return f
    return {
        "wrong_size": np.zeros((8, 8, 3), np.uint8),
        "float": np.zeros((*HW, 3), np.float32),
        "gray": np.zeros(HW, np.uint8),
        "four_ch": np.zeros((*HW, 4), np.uint8),
        "empty": np.zeros((0, 0, 3), np.uint8),
        "none": None,
        "str": "frame",
        "list": [[0, 0, 0]],
    }[kind]


def _chunk(kind: str) -> Any:
    ok = np.zeros((H, A), np.float32)
    ok[:, :3], ok[:, 3] = 0.01, -1.0
    if kind == "ok":
        return ok
    if kind == "edge":
        e = ok.copy()
        e[:, :3], e[:, 3] = 0.036, -0.9
        return e
    if kind == "list":
        return ok.tolist()
    if kind in ("all3", "1e5", "neg_huge"):
        return np.full((H, A), {"all3": 3.0, "1e5": 1e5, "neg_huge": -1e30}[kind], np.float32)
    if kind in ("one_point", "gripper", "nan", "inf"):
        c = ok.copy()
        where, v = {
            "one_point": ((2, 1), 3.0),
            "gripper": ((0, 3), 1.0),
            "nan": ((1, 0), math.nan),
            "inf": ((3, 2), math.inf),
        }[kind]
        c[where] = v
        return c
    return {
        "f64_overflow": np.full((H, A), 1e39, np.float64),
        "short": ok[:-1],
        "wide": np.zeros((H, A + 1), np.float32),
        "int": np.zeros((H, A), np.int64),
        "bool": np.zeros((H, A), bool),
        "object": np.array([[object()] * A] * H, dtype=object),
        "none": None,
        "str": "chunk",
        "ragged": [[0.0] * A, [0.0]],
        "3d": np.zeros((1, H, A), np.float32),
    }[kind]


def _bad_time(kind: str) -> Any:
    return {
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "none": None,
        "str": "now",
        "bool": True,
        "list": [1.0],
        "huge": 1e300,
    }[kind]


time_kind = st.one_of(st.sampled_from(STEPS), st.sampled_from(BAD_TIMES))
event = st.one_of(
    st.tuples(
        st.just("image"), st.sampled_from(FRAME_KINDS), st.sampled_from(ENCODINGS), time_kind
    ),
    st.tuples(st.just("actions"), st.sampled_from(CHUNK_KINDS), st.none(), time_kind),
    st.tuples(st.just("tick"), st.none(), st.none(), time_kind),
    st.tuples(st.just("decide"), st.none(), st.none(), time_kind),
    st.tuples(st.just("reject"), st.sampled_from(["image", "actions"]), st.none(), time_kind),
)


class _Clock:
    """The caller's clock: steps forward, repeats, jumps back or 30 s ahead, or is garbage."""

    def __init__(self) -> None:
        self.t = 0.0

    def value(self, kind: str) -> tuple[Any, bool]:
        """(value, whether it is a finite time)."""
        if kind in BAD_TIMES:
            v = _bad_time(kind)
            return v, kind == "huge"
        step = {"next": PERIOD, "jitter": PERIOD * 1.2, "same": 0.0, "back": -1.0,
                "gap": 30.0, "fast": PERIOD * 0.1}[kind]  # fmt: skip
        self.t = self.t + step
        return self.t, True


# --------------------------------------------------------------------------- the checks
def _closed(status: GateStatus) -> bool:
    return status.decision is Decision.STOP and status.lock


def _check_invariants(s: MonitorSession, mon: _Monitor, offered: dict[int, float]) -> None:
    status = s.status()
    if status.decision is Decision.PROCEED:
        assert status.risk is not None and status.risk <= SLOW, status
    assert s.accounting.problems() == []
    summary = s.summary()
    json.dumps(summary, allow_nan=False)
    counts = summary["counts"]
    assert counts["decisions"] == len(summary["decisions"])
    assert counts["assessments"] <= counts["decisions"]
    assert counts["assessments"] + counts["backend_errors"] == len(mon.calls)
    for frames, chunk, _stamp in mon.calls:
        assert frames.dtype == np.uint8 and frames.shape == (K, *HW, 3)
        assert chunk.dtype == np.float32 and np.isfinite(chunk).all()
        assert RANGE.violation(chunk) is None
        ids = [int(f[0, 0, 0]) + 256 * int(f[0, 0, 1]) for f in frames]
        stamps = [offered[i] for i in ids]
        gaps = np.diff(stamps)
        assert (np.abs(gaps - PERIOD) <= TOLERANCE * PERIOD + 1e-9).all(), stamps


def _run(events: list[tuple], *, rate_hz: float = 0.0) -> tuple[MonitorSession, _Monitor]:
    mon = _Monitor()
    gate = GateConfig(slow_threshold=SLOW, stop_threshold=STOP, reopen_after=2)
    s = MonitorSession(mon, gate, SessionConfig(decision_rate_hz=rate_hz))
    clock = _Clock()
    offered: dict[int, float] = {}
    for ident, (kind, what, encoding, tkind) in enumerate(events):
        t, good_time = clock.value(tkind)
        if kind == "image":
            frame = _frame(what, ident)
            if good_time and what in GOOD_FRAMES:
                offered[ident] = float(t)
            status = s.on_image(frame, t, encoding)
            assert isinstance(status, GateStatus)
            if not (good_time and what in GOOD_FRAMES and encoding in GOOD_ENCODINGS):
                assert _closed(status), (what, encoding, tkind, status)
        elif kind == "actions":
            status = s.on_actions(_chunk(what), t)
            assert isinstance(status, GateStatus)
            if not (good_time and what in GOOD_CHUNKS):
                assert _closed(status), (what, tkind, status)
        elif kind == "tick":
            status = s.tick(t)
            assert isinstance(status, GateStatus)
            if not good_time:
                assert _closed(status), (tkind, status)
        elif kind == "decide":
            due = s.decision_due(t)
            assert isinstance(due, bool)
            result = s.decide(t)
            assert isinstance(result, DecisionResult)
            if not good_time:
                assert _closed(result.status) and result.error is not None, (tkind, result)
            if result.assessment is not None:
                assert result.assessment.decision is result.status.decision
        else:
            status = s.reject_input(what, "invalid_image", "undecodable", t)
            assert _closed(status)
        _check_invariants(s, mon, offered)
    return s, mon


@SETTINGS
@given(st.lists(event, max_size=40))
def test_hostile_sequences_never_raise_and_never_open_on_bad_input(events: list[tuple]) -> None:
    _run(events)


@SETTINGS
@given(st.lists(event, max_size=40))
def test_same_with_rate_based_decisions(events: list[tuple]) -> None:
    _run(events, rate_hz=5.0)


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(
    st.lists(st.sampled_from(["dark", "mid"]), min_size=4, max_size=30),
    st.sampled_from(["all3", "1e5", "one_point", "neg_huge", "gripper", "f64_overflow"]),
)
def test_absurd_finite_actions_never_open_the_gate(frames: list[str], kind: str) -> None:
    """Well-formed, well-spaced frames, but every chunk absurd: the gate never opens and every
    chunk is a counted rejection."""
    s = MonitorSession(_Monitor(), GateConfig(SLOW, STOP, reopen_after=1))
    for i, fk in enumerate(frames):
        t = PERIOD * i
        s.tick(t)
        s.on_image(_frame(fk, i), t)
        s.on_actions(_chunk(kind), t)
        r = s.decide(t)
        assert r.status.decision is not Decision.PROCEED and r.assessment is None
    rejected = s.accounting.counts("actions").rejected
    assert sum(rejected.values()) == len(frames)
    assert set(rejected) <= {"action_out_of_range", "non_finite_input"}


@settings(max_examples=80, derandomize=True, database=None, deadline=None)
@given(st.lists(st.sampled_from([0.1, 0.1, 0.1, 0.12, 0.08, 0.2, 0.01, 30.0, 1e5]), max_size=30))
def test_context_is_never_assessed_across_a_gap(spacings: list[float]) -> None:
    """Well-formed frames and chunks, random frame spacing (jitter, dropped frames, a faster
    camera, 30 s and 1e5 s gaps): every assessed context is spaced like the frame period, the
    decision right after a late frame is a STOP, never an assessment, and a frame that comes
    too soon is skipped (decimated), never part of a context."""
    mon = _Monitor()
    s = MonitorSession(mon, GateConfig(SLOW, STOP, reopen_after=1))
    t, offered = 0.0, {}
    for i, dt in enumerate([0.0, *spacings]):
        t += dt
        offered[i] = t
        s.tick(t)
        decimated = s.buffer.decimated
        s.on_image(_frame("dark", i), t)
        s.on_actions(_chunk("ok"), t)
        r = s.decide(t)
        if i > 0 and dt > (1 + TOLERANCE) * PERIOD:
            assert r.assessment is None and _closed(r.status), (dt, r)
            assert r.error == "context_gap"
        if i > 0 and dt < (1 - TOLERANCE) * PERIOD:
            assert s.buffer.decimated == decimated + 1, dt
        _check_invariants(s, mon, offered)
