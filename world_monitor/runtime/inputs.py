"""Validation, buffering and accounting of the monitor's two inputs: camera frames and action chunks.

Why this exists: the DEVELOPERS rule is *fail closed*, and its input half is "bad input gets a
clear machine-readable reason, and nothing is silently dropped". So:

* :func:`validate_frame`, :func:`validate_action_chunk` and :func:`validate_stamp` raise
  :class:`InputError`, which names the input (``"image"`` / ``"actions"``), carries a
  :class:`~world_monitor.runtime.types.Reason` and a human-readable detail. The caller forwards
  ``err.reason`` to ``Gate.report_fault`` so the gate closes and says why.
* :class:`InputBuffer` keeps the last ``context`` frames and the latest action chunk, rejects
  out-of-order stamps, and *returns* an ``InputError`` from its ``offer_*`` methods instead of
  raising, because they run inside sensor callbacks where an escaped exception can kill the
  executor. Only :meth:`InputBuffer.take` raises (the decision worker handles it).
* The contract is the bundle's, not just the dtype's: an action chunk with a finite value
  outside the bundle's training range (:class:`ActionRange`, from the manifest, margin
  included) is rejected with ``action_out_of_range`` (a command 100x the training range
  saturated the probe's confidence and *opened* the gate), and context frames must be spaced
  like the bundle's frame period: a frame that breaks the spacing restarts the context, and
  until ``context`` well-spaced frames have arrived a decision is ``context_gap``, not an
  assessment of frames 30 s apart.
* :class:`InputAccounting` counts every offered input as accepted or rejected (per reason) and
  every accepted one as used (contributed to at least one decision), superseded (evicted or
  replaced before ever being used) or still pending. Invariants, checked by
  :meth:`InputAccounting.problems`::

      offered  == accepted + sum(rejected.values())
      accepted == used + superseded + pending

Stamps are seconds (float). Per stream they must be strictly increasing by default: a duplicate
stamp is almost always a re-published or re-read message, and an older one means the transport
reordered messages, which a monitor must not silently paper over.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

from world_monitor.runtime.types import Reason

__all__ = [
    "IMAGE",
    "ACTIONS",
    "STREAMS",
    "ActionRange",
    "DecisionInputs",
    "InputAccounting",
    "InputBuffer",
    "InputError",
    "StreamCounts",
    "validate_action_chunk",
    "validate_frame",
    "validate_stamp",
]

logger = logging.getLogger(__name__)

IMAGE = "image"
ACTIONS = "actions"
STREAMS: tuple[str, ...] = (IMAGE, ACTIONS)

#: image encodings accepted by :func:`validate_frame` (sensor_msgs/Image names).
_ENCODINGS = ("rgb8", "bgr8")


class InputError(ValueError):
    """A rejected input, naming which one, why (machine-readable) and the details (for humans).

    Attributes:
        input: ``"image"`` or ``"actions"`` (or whatever stream name the caller used).
        reason: a :class:`Reason`, e.g. ``Reason.invalid_image``.
        detail: what exactly was wrong, with the offending values.
    """

    def __init__(self, input: str, reason: Reason, detail: str) -> None:  # noqa: A002
        self.input = input
        self.reason = Reason(reason)
        self.detail = detail
        super().__init__(f"{input}: {self.reason.value}: {detail}")


@dataclass(frozen=True)
class ActionRange:
    """Inclusive per-dimension bounds ``[low, high]`` every value of an action chunk must lie in.

    Why: the world model was trained on one range of commands (the simulator clips end-effector
    deltas to +-0.03 m per step); far outside it the probe's confidence is meaningless (measured:
    a chunk of 3.0 saturates it at 1.0 and the gate opened). So the bundle declares its training
    range with a margin (manifest ``action_range``: ``min``, ``max``, ``margin`` per dimension)
    and anything outside ``[min - margin, max + margin]`` is refused, not assessed.

    Bounds are compared in float32 (the dtype chunks are validated to), so a value written as
    the bound itself (``-0.9`` as float32) is inside.
    """

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float64).reshape(-1)
        high = np.asarray(self.high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise ValueError(f"ActionRange: low {low.shape} and high {high.shape} must match")
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError("ActionRange: bounds must be finite")
        if (low > high).any():
            raise ValueError(f"ActionRange: low {low.tolist()} > high {high.tolist()}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def dim(self) -> int:
        return int(self.low.size)

    @classmethod
    def from_manifest(cls, spec: Any) -> ActionRange:
        """From a manifest ``action_range`` (``min``/``max``/``margin`` lists): the enforced
        bounds are ``min - margin`` and ``max + margin``."""
        lo = np.asarray(spec["min"], dtype=np.float64)
        hi = np.asarray(spec["max"], dtype=np.float64)
        return cls(lo, hi).with_margin(np.asarray(spec["margin"], dtype=np.float64))

    def with_margin(self, margin: Any) -> ActionRange:
        """These bounds widened by ``margin`` (scalar or per dimension, >= 0) on both sides."""
        m = np.broadcast_to(np.asarray(margin, dtype=np.float64), self.low.shape)
        if not np.isfinite(m).all() or (m < 0).any():
            raise ValueError(f"ActionRange: margin must be finite and >= 0, got {m.tolist()}")
        return ActionRange(self.low - m, self.high + m)

    def violation(self, chunk: np.ndarray) -> str | None:
        """``None`` when every value of ``chunk`` [H, A] is inside, else what is outside."""
        arr = np.asarray(chunk, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            return f"chunk shape {tuple(arr.shape)} does not match the range's {self.dim} dims"
        lo, hi = self.low.astype(np.float32), self.high.astype(np.float32)
        with np.errstate(invalid="ignore"):
            bad = ~((arr >= lo) & (arr <= hi))
        if not bad.any():
            return None
        h, a = (int(i) for i in np.argwhere(bad)[0])
        return (
            f"{int(bad.sum())} value(s) outside the bundle's action range, first at ({h}, {a}): "
            f"{float(arr[h, a])!r} not in [{float(lo[a]):.6g}, {float(hi[a]):.6g}]"
        )


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate_stamp(
    stamp: Any, *, name: str, last: float | None = None, allow_equal: bool = False
) -> float:
    """Return ``stamp`` as float seconds, or raise :class:`InputError`.

    * not a real number (or a bool) → ``invalid_stamp``
    * NaN / Inf → ``non_finite_input``
    * ``stamp < last`` (or ``== last`` unless ``allow_equal``) → ``out_of_order_stamp``
    """
    if isinstance(stamp, bool) or not isinstance(stamp, Real | np.floating | np.integer):
        raise InputError(name, Reason.invalid_stamp, f"stamp must be a real number, got {stamp!r}")
    value = float(stamp)
    if not math.isfinite(value):
        raise InputError(name, Reason.non_finite_input, f"stamp is not finite: {value!r}")
    if last is not None and (value < last or (value == last and not allow_equal)):
        what = "duplicate" if value == last else "older than"
        raise InputError(
            name,
            Reason.out_of_order_stamp,
            f"stamp {value:.9f} is {what} the last accepted {last:.9f}",
        )
    return value


def validate_frame(
    frame: Any,
    expected_hw: tuple[int, int] | None = None,
    *,
    encoding: str | None = None,
    name: str = IMAGE,
) -> np.ndarray:
    """Check one camera frame and return it as a C-contiguous uint8 [H, W, 3] RGB array.

    Non-contiguous views (crops, flips) are accepted and made contiguous (copy only if needed).
    ``encoding`` (sensor_msgs/Image naming) may be ``"rgb8"`` or ``"bgr8"`` (channels swapped to
    RGB); anything else is rejected rather than guessed, since a wrong colour order changes
    what the model sees without any error. Every failure raises ``InputError(reason=
    Reason.invalid_image)``; uint8 cannot hold NaN, so there is no non-finite case here.
    """
    if not isinstance(frame, np.ndarray):
        raise InputError(name, Reason.invalid_image, f"expected np.ndarray, got {type(frame)}")
    if frame.dtype != np.uint8:
        raise InputError(name, Reason.invalid_image, f"expected dtype uint8, got {frame.dtype}")
    if frame.ndim != 3:
        raise InputError(
            name, Reason.invalid_image, f"expected shape [H, W, 3], got {tuple(frame.shape)}"
        )
    if frame.shape[2] != 3:
        raise InputError(
            name,
            Reason.invalid_image,
            f"expected 3 channels (RGB), got {frame.shape[2]} in shape {tuple(frame.shape)}",
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(name, Reason.invalid_image, f"empty image, shape {tuple(frame.shape)}")
    if expected_hw is not None and tuple(frame.shape[:2]) != tuple(expected_hw):
        raise InputError(
            name,
            Reason.invalid_image,
            f"expected size HxW {tuple(expected_hw)}, got {tuple(frame.shape[:2])}",
        )
    if encoding is not None:
        if encoding not in _ENCODINGS:
            raise InputError(
                name,
                Reason.invalid_image,
                f"unsupported encoding {encoding!r}, expected one of {_ENCODINGS}",
            )
        if encoding == "bgr8":
            frame = frame[..., ::-1]
    return np.ascontiguousarray(frame)


def validate_action_chunk(
    chunk: Any,
    horizon: int | None,
    action_dim: int | None,
    *,
    name: str = ACTIONS,
    action_range: ActionRange | None = None,
) -> np.ndarray:
    """Check one action chunk and return it as C-contiguous float32 [H, A].

    Accepts numpy arrays and array-likes (lists from JointTrajectory, ``array('f')`` from
    Float32MultiArray) whose dtype is float32 or float64; integer/bool/object data is rejected
    because it signals a decoding bug, not a command. ``horizon`` / ``action_dim`` may be
    ``None`` to skip that check. NaN/Inf (including float64 values that overflow float32)
    → ``non_finite_input``; a finite value outside ``action_range`` → ``action_out_of_range``;
    everything else → ``invalid_actions``.
    """
    try:
        arr = np.asarray(chunk)
    except (ValueError, TypeError) as exc:  # ragged nested lists etc.
        raise InputError(name, Reason.invalid_actions, f"not an array: {exc}") from None
    if arr.dtype not in (np.float32, np.float64):
        raise InputError(
            name, Reason.invalid_actions, f"expected dtype float32/float64, got {arr.dtype}"
        )
    if arr.ndim != 2:
        raise InputError(
            name, Reason.invalid_actions, f"expected shape [H, A], got {tuple(arr.shape)}"
        )
    if arr.size == 0:
        raise InputError(name, Reason.invalid_actions, f"empty chunk, shape {tuple(arr.shape)}")
    if horizon is not None and arr.shape[0] != horizon:
        raise InputError(
            name,
            Reason.invalid_actions,
            f"expected horizon H={horizon}, got shape {tuple(arr.shape)}",
        )
    if action_dim is not None and arr.shape[1] != action_dim:
        raise InputError(
            name,
            Reason.invalid_actions,
            f"expected action dim A={action_dim}, got shape {tuple(arr.shape)}",
        )
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            name,
            Reason.non_finite_input,
            f"{int(bad.sum())} non-finite value(s) (after float32 cast), first at {idx}: "
            f"{arr[idx]!r}",
        )
    if action_range is not None:
        problem = action_range.violation(out)
        if problem is not None:
            raise InputError(name, Reason.action_out_of_range, problem)
    return out


# --------------------------------------------------------------------------------------------
# accounting
# --------------------------------------------------------------------------------------------


@dataclass
class StreamCounts:
    """Counts for one input stream (see the module docstring for the invariants)."""

    offered: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    used: int = 0
    superseded: int = 0
    pending: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "rejected_total": self.rejected_total,
            "used": self.used,
            "superseded": self.superseded,
            "pending": self.pending,
        }


class InputAccounting:
    """Thread-safe per-stream counters so every input is accounted for.

    Protocol: call :meth:`offered` when an input arrives, then exactly one of :meth:`accept` /
    :meth:`reject`. Accepted inputs start *pending* and move to *used* (:meth:`mark_used`) or
    *superseded* (:meth:`mark_superseded`). Inputs that never reach numpy (e.g. a message the ROS
    layer could not decode) are recorded with :meth:`offered` + :meth:`reject` too.
    """

    def __init__(self, streams: tuple[str, ...] = STREAMS) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, StreamCounts] = {s: StreamCounts() for s in streams}

    def _get(self, stream: str) -> StreamCounts:
        counts = self._counts.get(stream)
        if counts is None:  # unknown streams are counted, not dropped
            counts = self._counts[stream] = StreamCounts()
        return counts

    def offered(self, stream: str) -> None:
        with self._lock:
            self._get(stream).offered += 1

    def accept(self, stream: str) -> None:
        with self._lock:
            c = self._get(stream)
            c.accepted += 1
            c.pending += 1

    def reject(self, stream: str, reason: Reason | str) -> None:
        key = Reason(reason).value if isinstance(reason, Reason) else str(reason)
        with self._lock:
            c = self._get(stream)
            c.rejected[key] = c.rejected.get(key, 0) + 1

    def mark_used(self, stream: str, n: int = 1) -> None:
        """``n`` pending inputs contributed to a decision for the first time."""
        with self._lock:
            c = self._get(stream)
            c.used += n
            c.pending -= n

    def mark_superseded(self, stream: str, n: int = 1) -> None:
        """``n`` pending inputs were evicted or replaced without ever being used."""
        with self._lock:
            c = self._get(stream)
            c.superseded += n
            c.pending -= n

    def counts(self, stream: str) -> StreamCounts:
        """A copy of one stream's counts."""
        with self._lock:
            c = self._get(stream)
            return StreamCounts(
                c.offered, c.accepted, dict(c.rejected), c.used, c.superseded, c.pending
            )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {s: c.to_dict() for s, c in self._counts.items()}

    def problems(self) -> list[str]:
        """Violated invariants (empty list = every input is accounted for)."""
        out = []
        with self._lock:
            for s, c in self._counts.items():
                if c.offered != c.accepted + c.rejected_total:
                    out.append(
                        f"{s}: offered {c.offered} != accepted {c.accepted} + rejected "
                        f"{c.rejected_total}"
                    )
                if c.accepted != c.used + c.superseded + c.pending or c.pending < 0:
                    out.append(
                        f"{s}: accepted {c.accepted} != used {c.used} + superseded "
                        f"{c.superseded} + pending {c.pending}"
                    )
        return out


# --------------------------------------------------------------------------------------------
# buffer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionInputs:
    """A consistent snapshot for one decision: ``context`` frames (oldest first) + one chunk."""

    frames: np.ndarray  # uint8 [k, H, W, 3]
    frame_stamps: np.ndarray  # float64 [k], strictly increasing
    actions: np.ndarray  # float32 [H, A]
    action_stamp: float

    @property
    def stamp(self) -> float:
        """The decision's stamp: the newest frame's (what the assessment is about)."""
        return float(self.frame_stamps[-1])


@dataclass
class _Slot:
    data: np.ndarray
    stamp: float
    used: bool = False


class InputBuffer:
    """Bounded buffer of the last ``context`` frames and the latest action chunk.

    Thread-safe: sensor callbacks call ``offer_*`` while the decision worker calls :meth:`take`.
    Frames are copied on acceptance so a driver reusing its buffer cannot change history.

    Args:
        context: number of context frames a decision needs (k).
        image_hw: expected (H, W), or None to accept any size. Configure it in deployment:
            the model was trained at one size and a resized stream must be rejected, not fed.
        horizon: expected chunk length H (None: any).
        action_dim: expected action dimension A (None: any).
        allow_equal_stamps: accept a stamp equal to the previous one on the same stream.
        accounting: share counters with the caller (e.g. the ROS node's decode failures).
        action_range: refuse chunks outside it (``action_out_of_range``); None: no range check.
        frame_period_s: the camera period the model was trained and calibrated at; a frame
            whose spacing from the previous one differs by more than ``period_tolerance``
            (relative) restarts the context (None: no spacing check). A frame *sooner* than
            ``(1 - period_tolerance) * frame_period_s`` after the last kept one is skipped
            (accepted, counted superseded and in ``decimated``): a faster camera is
            subsampled to the bundle's rate rather than refused.
        period_tolerance: relative tolerance on the frame spacing, in (0, 1).
    """

    def __init__(
        self,
        context: int,
        image_hw: tuple[int, int] | None,
        horizon: int | None,
        action_dim: int | None,
        *,
        allow_equal_stamps: bool = False,
        accounting: InputAccounting | None = None,
        action_range: ActionRange | None = None,
        frame_period_s: float | None = None,
        period_tolerance: float = 0.5,
    ) -> None:
        if int(context) < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        if frame_period_s is not None and not (
            isinstance(frame_period_s, Real) and 0 < float(frame_period_s) < math.inf
        ):
            raise ValueError(f"frame_period_s must be a finite number > 0, got {frame_period_s!r}")
        if not (isinstance(period_tolerance, Real) and 0 < float(period_tolerance) < 1):
            raise ValueError(f"period_tolerance must be in (0, 1), got {period_tolerance!r}")
        if action_range is not None and action_dim is not None and action_range.dim != action_dim:
            raise ValueError(
                f"action_range has {action_range.dim} dims but action_dim is {action_dim}"
            )
        self.action_range = action_range
        self.frame_period_s = None if frame_period_s is None else float(frame_period_s)
        self.period_tolerance = float(period_tolerance)
        #: why the context restarted, until it is full again (take() says context_gap)
        self._gap: str | None = None
        #: a restart caused by the latest offered frame, for the session to report once
        self._new_gap: str | None = None
        self.context = int(context)
        self.image_hw = None if image_hw is None else (int(image_hw[0]), int(image_hw[1]))
        self.horizon = horizon
        self.action_dim = action_dim
        self.allow_equal_stamps = allow_equal_stamps
        self.accounting = accounting if accounting is not None else InputAccounting()
        self._lock = threading.Lock()
        self._frames: deque[_Slot] = deque()
        self._actions: _Slot | None = None
        self._last_stamp: dict[str, float | None] = {IMAGE: None, ACTIONS: None}
        #: valid frames skipped because they came sooner than the bundle's frame period allows
        self.decimated = 0

    # ---- offers (never raise) ---------------------------------------------------------------

    def offer_frame(
        self, frame: Any, stamp: Any, *, encoding: str | None = None
    ) -> InputError | None:
        """Offer one camera frame. Returns ``None`` if accepted, else the :class:`InputError`."""
        return self._offer(IMAGE, frame, stamp, encoding)

    def offer_actions(self, chunk: Any, stamp: Any) -> InputError | None:
        """Offer one action chunk. Returns ``None`` if accepted, else the :class:`InputError`."""
        return self._offer(ACTIONS, chunk, stamp, None)

    def _offer(self, stream: str, data: Any, stamp: Any, encoding: str | None) -> InputError | None:
        self.accounting.offered(stream)
        try:
            with self._lock:
                t = validate_stamp(
                    stamp,
                    name=stream,
                    last=self._last_stamp[stream],
                    allow_equal=self.allow_equal_stamps,
                )
                decimated = False
                if stream == IMAGE:
                    arr = validate_frame(data, self.image_hw, encoding=encoding, name=stream)
                    decimated = self._too_soon(t)
                    if not decimated:
                        self._push_frame(np.array(arr, dtype=np.uint8, copy=True), t)
                else:
                    arr = validate_action_chunk(
                        data,
                        self.horizon,
                        self.action_dim,
                        name=stream,
                        action_range=self.action_range,
                    )
                    self._set_actions(np.array(arr, dtype=np.float32, copy=True), t)
                self._last_stamp[stream] = t
                self.accounting.accept(stream)
                if decimated:  # valid, and never going to be a context frame
                    self.accounting.mark_superseded(IMAGE)
                    self.decimated += 1
                return None
        except InputError as err:
            self.accounting.reject(stream, err.reason)
            logger.debug("rejected %s", err)
            return err
        except Exception as exc:  # a bug here must still be counted and reported, not raised
            self.accounting.reject(stream, Reason.internal_error)
            logger.exception("internal error while buffering %s", stream)
            return InputError(stream, Reason.internal_error, f"{type(exc).__name__}: {exc}")

    def _too_soon(self, t: float) -> bool:
        """A frame closer to the last kept one than the period allows (a camera faster than
        the bundle's rate): skip it, so a 30 Hz camera feeds a 10 Hz bundle every third frame
        instead of breaking the context spacing on every frame (a permanent context_gap)."""
        period = self.frame_period_s
        if period is None or not self._frames:
            return False
        return t - self._frames[-1].stamp < (1.0 - self.period_tolerance) * period

    def _push_frame(self, arr: np.ndarray, t: float) -> None:
        period = self.frame_period_s
        self._new_gap = None
        if period is not None and self._frames:
            dt = t - self._frames[-1].stamp
            if abs(dt - period) > self.period_tolerance * period:
                # the older frames and this one do not form a context the model was trained
                # on: restart from this frame (the old ones stay accounted for)
                self._gap = self._new_gap = (
                    f"frame at {t:.6f} s came {dt:.6f} s after the previous one; the bundle's "
                    f"frame period is {period:g} s +-{self.period_tolerance:.0%}"
                )
                while self._frames:
                    old = self._frames.popleft()
                    if not old.used:
                        self.accounting.mark_superseded(IMAGE)
        self._frames.append(_Slot(arr, t))
        while len(self._frames) > self.context:
            old = self._frames.popleft()
            if not old.used:
                self.accounting.mark_superseded(IMAGE)
        if len(self._frames) >= self.context:
            self._gap = None

    def pop_context_gap(self) -> str | None:
        """Why the latest accepted frame restarted the context (once), else ``None``."""
        with self._lock:
            gap, self._new_gap = self._new_gap, None
            return gap

    def _set_actions(self, arr: np.ndarray, t: float) -> None:
        if self._actions is not None and not self._actions.used:
            self.accounting.mark_superseded(ACTIONS)
        self._actions = _Slot(arr, t)

    # ---- decision side ----------------------------------------------------------------------

    def take(self) -> DecisionInputs:
        """Snapshot for one decision; marks its inputs used.

        Raises :class:`InputError` with ``no_image_yet`` (fewer than ``context`` frames),
        ``context_gap`` (fewer since a frame broke the spacing) or ``no_actions_yet``.
        Staleness is the gate's job (it has the clock), not the buffer's.
        """
        with self._lock:
            if len(self._frames) < self.context:
                if self._gap is not None:
                    raise InputError(
                        IMAGE,
                        Reason.context_gap,
                        f"{self._gap}; {len(self._frames)} of {self.context} context frames since",
                    )
                raise InputError(
                    IMAGE,
                    Reason.no_image_yet,
                    f"have {len(self._frames)} of {self.context} context frames",
                )
            if self._actions is None:
                raise InputError(ACTIONS, Reason.no_actions_yet, "no action chunk received yet")
            slots = list(self._frames)
            for s in slots:
                if not s.used:
                    s.used = True
                    self.accounting.mark_used(IMAGE)
            if not self._actions.used:
                self._actions.used = True
                self.accounting.mark_used(ACTIONS)
            return DecisionInputs(
                frames=np.stack([s.data for s in slots]),
                frame_stamps=np.array([s.stamp for s in slots], dtype=np.float64),
                actions=self._actions.data.copy(),
                action_stamp=self._actions.stamp,
            )

    def last_stamp(self, stream: str) -> float | None:
        with self._lock:
            return self._last_stamp[stream]

    def reset(self) -> None:
        """Forget all inputs and stamps (e.g. after a sim-time reset). Unused ones count as
        superseded so the accounting still adds up."""
        with self._lock:
            for s in self._frames:
                if not s.used:
                    self.accounting.mark_superseded(IMAGE)
            self._frames.clear()
            if self._actions is not None and not self._actions.used:
                self.accounting.mark_superseded(ACTIONS)
            self._actions = None
            self._last_stamp = {IMAGE: None, ACTIONS: None}
            self._gap = self._new_gap = None
