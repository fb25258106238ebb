"""Input validation, the bounded input buffer and the every-input-accounted-for counters."""

from __future__ import annotations

import contextlib
import threading
from array import array

import numpy as np
import pytest

from world_monitor.runtime import inputs as inputs_mod
from world_monitor.runtime.inputs import (
    ACTIONS,
    IMAGE,
    InputAccounting,
    InputBuffer,
    InputError,
    validate_action_chunk,
    validate_frame,
    validate_stamp,
)
from world_monitor.runtime.types import Reason

HW = (6, 8)
H, A = 4, 3


def frame(value: int = 0, hw: tuple[int, int] = HW) -> np.ndarray:
    return np.full((*hw, 3), value, np.uint8)


def chunk(value: float = 0.0) -> np.ndarray:
    return np.full((H, A), value, np.float32)


def assert_error(exc_info, name: str, reason: Reason, text: str = "") -> None:
    err = exc_info.value
    assert isinstance(err, InputError)
    assert err.input == name and err.reason is reason
    assert str(err).startswith(f"{name}: {reason.value}: ")
    assert text in err.detail


# --------------------------------------------------------------------------- frames


def test_validate_frame_accepts_rgb_uint8_and_non_contiguous_views():
    f = np.arange(6 * 16 * 3, dtype=np.uint8).reshape(6, 16, 3)
    view = f[:, ::2]  # non-contiguous 6x8
    assert not view.flags.c_contiguous
    out = validate_frame(view, HW)
    assert out.flags.c_contiguous and out.dtype == np.uint8 and out.shape == (*HW, 3)
    np.testing.assert_array_equal(out, view)
    assert validate_frame(frame(1)) is not None  # no size check when expected_hw is None


def test_validate_frame_bgr8_is_converted_to_rgb():
    f = np.zeros((*HW, 3), np.uint8)
    f[..., 0] = 255  # blue in BGR
    out = validate_frame(f, HW, encoding="bgr8")
    assert out[0, 0].tolist() == [0, 0, 255] and out.flags.c_contiguous


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        (np.zeros((*HW, 3), np.float32), "dtype uint8, got float32"),
        (np.zeros((*HW, 3), np.uint16), "dtype uint8"),
        (np.zeros(HW, np.uint8), "shape [H, W, 3]"),
        (np.zeros((1, *HW, 3), np.uint8), "shape [H, W, 3]"),
        (np.zeros((*HW, 4), np.uint8), "3 channels"),
        (np.zeros((*HW, 1), np.uint8), "3 channels"),
        (np.zeros((HW[1], HW[0], 3), np.uint8), "expected size"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        ([[[0, 0, 0]]], "np.ndarray"),
        (None, "np.ndarray"),
    ],
)
def test_validate_frame_rejects_with_invalid_image(bad, text):
    with pytest.raises(InputError) as ei:
        validate_frame(bad, HW)
    assert_error(ei, IMAGE, Reason.invalid_image, text)


def test_validate_frame_rejects_unknown_encoding():
    with pytest.raises(InputError) as ei:
        validate_frame(frame(), HW, encoding="yuv422")
    assert_error(ei, IMAGE, Reason.invalid_image, "encoding")


# --------------------------------------------------------------------------- action chunks


@pytest.mark.parametrize(
    "good",
    [
        np.zeros((H, A), np.float32),
        np.zeros((H, A), np.float64),
        np.zeros((A, H), np.float32).T,  # non-contiguous
        [[0.5] * A for _ in range(H)],  # JointTrajectory-style lists
        np.frombuffer(array("f", [0.25] * (H * A)), np.float32).reshape(H, A),
    ],
)
def test_validate_action_chunk_returns_float32_contiguous(good):
    out = validate_action_chunk(good, H, A)
    assert out.dtype == np.float32 and out.shape == (H, A) and out.flags.c_contiguous


@pytest.mark.parametrize(
    ("bad", "reason", "text"),
    [
        (np.zeros((H, A), np.int64), Reason.invalid_actions, "dtype float32/float64"),
        (np.zeros((H, A), np.float16), Reason.invalid_actions, "dtype"),
        (np.zeros(H * A, np.float32), Reason.invalid_actions, "shape [H, A]"),
        (np.zeros((1, H, A), np.float32), Reason.invalid_actions, "shape [H, A]"),
        (np.zeros((H + 1, A), np.float32), Reason.invalid_actions, f"horizon H={H}"),
        (np.zeros((H, A + 1), np.float32), Reason.invalid_actions, f"action dim A={A}"),
        ([[0.0, 1.0], [0.0]], Reason.invalid_actions, "not an array"),
        ("go", Reason.invalid_actions, "dtype"),
        (np.full((H, A), np.nan), Reason.non_finite_input, "non-finite"),
        (np.full((H, A), -np.inf, np.float32), Reason.non_finite_input, "non-finite"),
        (np.full((H, A), 1e300), Reason.non_finite_input, "float32 cast"),
    ],
)
def test_validate_action_chunk_rejects(bad, reason, text):
    with pytest.raises(InputError) as ei:
        validate_action_chunk(bad, H, A)
    assert_error(ei, ACTIONS, reason, text)


def test_validate_action_chunk_reports_first_bad_index():
    c = chunk()
    c[2, 1] = np.nan
    with pytest.raises(InputError) as ei:
        validate_action_chunk(c, H, A)
    assert "(2, 1)" in ei.value.detail


def test_validate_action_chunk_optional_dims():
    assert validate_action_chunk(np.zeros((7, 2)), None, None).shape == (7, 2)


# --------------------------------------------------------------------------- stamps


@pytest.mark.parametrize(
    ("stamp", "last", "reason"),
    [
        ("1.0", None, Reason.invalid_stamp),
        (True, None, Reason.invalid_stamp),
        (None, None, Reason.invalid_stamp),
        (float("nan"), None, Reason.non_finite_input),
        (float("inf"), None, Reason.non_finite_input),
        (0.9, 1.0, Reason.out_of_order_stamp),
        (1.0, 1.0, Reason.out_of_order_stamp),
    ],
)
def test_validate_stamp_rejects(stamp, last, reason):
    with pytest.raises(InputError) as ei:
        validate_stamp(stamp, name=IMAGE, last=last)
    assert_error(ei, IMAGE, reason)


def test_validate_stamp_accepts():
    assert validate_stamp(np.float32(1.5), name=IMAGE) == 1.5
    assert validate_stamp(np.int64(2), name=IMAGE, last=1.0) == 2.0
    assert validate_stamp(1.0, name=IMAGE, last=1.0, allow_equal=True) == 1.0


# --------------------------------------------------------------------------- buffer


def test_take_before_ready_names_what_is_missing():
    buf = InputBuffer(2, HW, H, A)
    with pytest.raises(InputError) as ei:
        buf.take()
    assert_error(ei, IMAGE, Reason.no_image_yet, "0 of 2")
    assert buf.offer_frame(frame(1), 0.0) is None
    assert buf.offer_frame(frame(2), 0.1) is None
    with pytest.raises(InputError) as ei:
        buf.take()
    assert_error(ei, ACTIONS, Reason.no_actions_yet)
    assert buf.offer_actions(chunk(1.0), 0.1) is None
    snap = buf.take()
    assert snap.frames.shape == (2, *HW, 3) and snap.frames.dtype == np.uint8
    assert snap.frames[:, 0, 0, 0].tolist() == [1, 2]  # oldest first
    assert snap.frame_stamps.tolist() == [0.0, 0.1] and snap.stamp == 0.1
    assert snap.actions.dtype == np.float32 and snap.action_stamp == 0.1


def test_buffer_rejects_out_of_order_and_duplicates_per_stream():
    buf = InputBuffer(2, HW, H, A)
    assert buf.offer_frame(frame(), 1.0) is None
    err = buf.offer_frame(frame(), 0.5)
    assert err.input == IMAGE and err.reason is Reason.out_of_order_stamp
    err = buf.offer_frame(frame(), 1.0)
    assert err.reason is Reason.out_of_order_stamp and "duplicate" in err.detail
    # streams are independent: an older action stamp than the last frame is fine
    assert buf.offer_actions(chunk(), 0.2) is None
    err = buf.offer_actions(chunk(), 0.1)
    assert err.input == ACTIONS and err.reason is Reason.out_of_order_stamp
    # a rejected input does not advance the stream's stamp
    assert buf.last_stamp(IMAGE) == 1.0 and buf.last_stamp(ACTIONS) == 0.2
    assert InputBuffer(2, HW, H, A, allow_equal_stamps=True).offer_frame(frame(), 0.0) is None


def test_buffer_copies_inputs():
    buf = InputBuffer(1, HW, H, A)
    f, c = frame(7), chunk(1.0)
    buf.offer_frame(f, 0.0)
    buf.offer_actions(c, 0.0)
    f[:] = 0
    c[:] = 0
    snap = buf.take()
    assert snap.frames.max() == 7 and snap.actions.min() == 1.0


def test_accounting_superseded_used_and_pending():
    buf = InputBuffer(2, HW, H, A)
    acc = buf.accounting
    for i in range(5):  # 5 frames, context 2: 3 evicted unused
        buf.offer_frame(frame(i), float(i))
    c = acc.counts(IMAGE)
    assert (c.offered, c.accepted, c.superseded, c.used, c.pending) == (5, 5, 3, 0, 2)
    buf.offer_actions(chunk(), 0.0)
    buf.offer_actions(chunk(), 1.0)  # replaces an unused chunk
    assert acc.counts(ACTIONS).superseded == 1
    buf.take()
    buf.take()  # the same inputs are not counted twice
    c = acc.counts(IMAGE)
    assert (c.used, c.pending) == (2, 0)
    assert acc.counts(ACTIONS).used == 1
    buf.offer_frame(frame(), 10.0)  # evicts a *used* frame: not superseded
    c = acc.counts(IMAGE)
    assert (c.superseded, c.used, c.pending) == (3, 2, 1)
    buf.reset()
    assert acc.counts(IMAGE).pending == 0 and acc.counts(IMAGE).superseded == 4
    assert buf.offer_frame(frame(), 0.0) is None  # stamps forgotten after reset
    assert acc.problems() == []


def test_accounting_totals_add_up_over_a_random_mix():
    rng = np.random.default_rng(0)
    buf = InputBuffer(3, HW, H, A)
    expected_rejects: dict[str, dict[str, int]] = {IMAGE: {}, ACTIONS: {}}
    t = {IMAGE: 0.0, ACTIONS: 0.0}
    goods = {
        IMAGE: lambda: frame(int(rng.integers(256))),
        ACTIONS: lambda: rng.standard_normal((H, A)),
    }
    bads = {
        IMAGE: [
            (np.zeros((*HW, 3), np.float32), Reason.invalid_image),
            (np.zeros((2, 2, 3), np.uint8), Reason.invalid_image),
        ],
        ACTIONS: [
            (np.zeros((H, A + 1)), Reason.invalid_actions),
            (np.full((H, A), np.inf), Reason.non_finite_input),
        ],
    }
    offer = {IMAGE: buf.offer_frame, ACTIONS: buf.offer_actions}
    n_offered = {IMAGE: 0, ACTIONS: 0}
    for i in range(400):
        s = IMAGE if rng.random() < 0.6 else ACTIONS
        kind = rng.random()
        n_offered[s] += 1
        last = buf.last_stamp(s)
        if kind < 0.6 or last is None:
            t[s] += 0.01
            err = offer[s](goods[s](), t[s])
            assert err is None
        elif kind < 0.8:
            data, reason = bads[s][int(rng.integers(2))]
            t[s] += 0.01
            err = offer[s](data, t[s])
            assert err.reason is reason
            expected_rejects[s][reason.value] = expected_rejects[s].get(reason.value, 0) + 1
        else:
            err = offer[s](goods[s](), last - 0.005)  # older than the last accepted
            assert err.reason is Reason.out_of_order_stamp
            key = Reason.out_of_order_stamp.value
            expected_rejects[s][key] = expected_rejects[s].get(key, 0) + 1
        if i % 7 == 0:
            try:
                buf.take()
            except InputError as err:
                assert err.reason in (Reason.no_image_yet, Reason.no_actions_yet)
    acc = buf.accounting
    assert acc.problems() == []
    for s in (IMAGE, ACTIONS):
        c = acc.counts(s)
        assert c.offered == n_offered[s]
        assert c.accepted + c.rejected_total == c.offered
        assert c.accepted == c.used + c.superseded + c.pending
        assert c.rejected == expected_rejects[s]
        assert c.used > 0 and c.superseded > 0
    d = acc.to_dict()
    assert d[IMAGE]["offered"] == n_offered[IMAGE]


def test_internal_error_while_buffering_is_counted_and_returned(monkeypatch):
    buf = InputBuffer(1, HW, H, A)

    def broken(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(inputs_mod, "validate_frame", broken)
    err = buf.offer_frame(frame(), 0.0)  # must not raise
    assert (
        err.input == IMAGE and err.reason is Reason.internal_error and "MemoryError" in err.detail
    )
    c = buf.accounting.counts(IMAGE)
    assert c.offered == 1 and c.rejected == {"internal_error": 1}
    assert buf.accounting.problems() == []


def test_accounting_detects_a_missing_outcome_and_counts_unknown_streams():
    acc = InputAccounting()
    acc.offered(IMAGE)  # never accepted nor rejected: must show up
    assert acc.problems() and "offered 1" in acc.problems()[0]
    acc.offered("cmd_in")
    acc.reject("cmd_in", "decode_failed")
    assert acc.counts("cmd_in").rejected == {"decode_failed": 1}


def test_buffer_is_thread_safe_and_accounting_consistent():
    buf = InputBuffer(2, HW, H, A)
    errors: list[BaseException] = []
    n = 300

    def producer(stream: str) -> None:
        try:
            for i in range(n):
                data = frame(i % 256) if stream == IMAGE else chunk(float(i))
                stamp = i * 0.01 if i % 10 else -1.0  # every 10th is out of order
                if stream == IMAGE:
                    buf.offer_frame(data, stamp)
                else:
                    buf.offer_actions(data, stamp)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def consumer() -> None:
        try:
            for _ in range(n):
                with contextlib.suppress(InputError):
                    buf.take()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(s,)) for s in (IMAGE, ACTIONS)]
    threads.append(threading.Thread(target=consumer))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert buf.accounting.problems() == []
    for s in (IMAGE, ACTIONS):
        c = buf.accounting.counts(s)
        assert c.offered == n and c.accepted + c.rejected_total == n
        assert c.rejected.get("out_of_order_stamp", 0) == n // 10 - 1  # i=0 stamp -1 is first


def test_input_error_message_names_the_input():
    err = InputError("image", Reason.invalid_image, "expected dtype uint8, got float32")
    assert str(err) == "image: invalid_image: expected dtype uint8, got float32"
    assert isinstance(err, ValueError)
