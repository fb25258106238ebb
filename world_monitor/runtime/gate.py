"""The gate: turns assessments, input health and a watchdog into PROCEED / SLOW / STOP.

Why it is a separate state machine and not an ``if risk > t`` in the Monitor: the gate is the
part that must stay correct when everything else goes wrong. It follows the DEVELOPERS rule
*fail closed* and the ecosystem's gating semantics (conventions.md):

* **Boot closed.** It starts at ``STOP`` / ``not_started`` and opens only on the first good
  assessment taken while no other cause is active.
* **Most aggressive rule wins** (nav2 collision_monitor). Every active cause is kept and
  reported; the decision is the most restrictive of them. Non-model causes (stale or bad input,
  backend fault, watchdog, internal error) all mean ``STOP``.
* **Hysteresis.** Escalation is immediate. Stepping down one level needs ``reopen_after``
  consecutive confident decisions (STOP→SLOW: risk < stop threshold; SLOW→PROCEED: risk <
  slow threshold); one risky decision resets the count. While any non-model cause is active the
  model level is forced to STOP and the count to 0, so recovery after a fault needs fresh good
  inputs (which clear the cause) *and* the confident decisions.
* **Watchdog on a caller-supplied clock.** :meth:`Gate.tick` takes ``now``; nothing here reads
  ``time.time()``, so sim time and offline replay behave exactly like wall time.
* **Never raises into the caller's loop.** Every public method catches its own failures and
  turns them into ``STOP`` / ``internal_error``; ``status()`` returns a precomputed snapshot.
* **Thread-safe.** One re-entrant lock: the ROS node updates from a worker thread and reads
  from a timer.

Deployment modes (nav2's ``enabled`` and report-only variant): ``enabled=False`` → always
``PROCEED`` with ``monitor_disabled``; ``shadow=True`` → the decision is computed and reported
but ``effective_decision`` is ``PROCEED`` (the caller decides not to block).

Wiring (the ROS node and offline replay do the same; ``buf`` is an ``InputBuffer``)::

    err = buf.offer_frame(frame, stamp)            # sensor callback, never raises
    gate.report_input_error(err, stamp) if err else gate.note_input("image", stamp)
    ...                                            # worker thread
    try:
        inputs = buf.take()                        # InputError: no_image_yet / no_actions_yet
        status = gate.update(monitor.assess(inputs), now=clock())
    except InputError as err:
        status = gate.report_input_error(err, clock())
    except Exception as exc:                       # backend fault: close and say why
        status = gate.report_fault(Reason.backend_error, repr(exc), clock())
    ...                                            # timer
    status = gate.tick(clock()); publish(lock=status.lock)

State machine (model level ``L``, instantaneous decision ``d`` from thresholds, count ``n``)::

    state        event                                   → decision        reason(s)
    boot         —                                       → STOP            not_started
    not started  tick, inputs missing                    → STOP            no_*_yet, not_started
    not started  accepted assessment, no other cause     → d (L:=d)        ok / risk_elevated /
                                                                           risk_high
    any          report_fault / bad input / stale input  → STOP (L:=STOP,  that cause (+
                 / no decision in time / clock backwards /  n:=0)          hysteresis_hold)
                 future stamp / malformed assessment / internal error
    L            accepted assessment with d >= L         → d (n:=0)        risk_high /
                                                                           risk_elevated / ok
    L=STOP       d < STOP and n+1 < N                    → STOP            hysteresis_hold
    L=STOP       d < STOP and n+1 = N                    → SLOW (n:=0)     risk_elevated (d=SLOW)
                                                                           or hysteresis_hold
    L=SLOW       d = PROCEED and n+1 < N                 → SLOW            hysteresis_hold
    L=SLOW       d = PROCEED and n+1 = N                 → PROCEED (n:=0)  ok
    fault w/ stream   next accepted input on that stream → cause cleared (L stays STOP)
    other fault       next accepted assessment           → cause cleared (L stays STOP)
    any          enabled=False                           → PROCEED         monitor_disabled
    any          shadow=True                             → decision as above, effective PROCEED
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from world_monitor.runtime.inputs import ACTIONS, IMAGE, STREAMS, InputError, validate_stamp
from world_monitor.runtime.risk import format_risk
from world_monitor.runtime.types import (
    Assessment,
    Decision,
    GateStatus,
    Reason,
    most_restrictive,
)

__all__ = [
    "CALIBRATION_GATE_KEYS",
    "REFUSED_CALIBRATION_GATE_KEYS",
    "Gate",
    "GateConfig",
    "check_calibration_gate_section",
]

logger = logging.getLogger(__name__)

#: reasons that only the model level produces (everything else is a non-model STOP cause).
_MODEL_REASONS = frozenset(
    {Reason.ok, Reason.risk_high, Reason.risk_elevated, Reason.hysteresis_hold, Reason.not_started}
)


#: GateConfig fields a bundle's ``calibration.json`` ``gate`` section may set (and the gate then
#: honours): tuning that belongs with the calibration (how many confident decisions reopen,
#: the input timeouts the thresholds were measured with).
CALIBRATION_GATE_KEYS = frozenset(
    {
        "reopen_after",
        "image_timeout_s",
        "action_timeout_s",
        "decision_timeout_s",
        "max_clock_skew_s",
    }
)
#: GateConfig fields a calibration file must not set, with why: deployment modes are run-time
#: decisions of the operator (ROS parameters), never something a file inside the bundle can
#: switch on silently; thresholds have their own ``thresholds`` section.
REFUSED_CALIBRATION_GATE_KEYS: dict[str, str] = {
    "shadow": "a deployment mode: set it as a run-time parameter (shadow_mode), not in the bundle",
    "enabled": "a deployment mode: set it as a run-time parameter (enabled), not in the bundle",
    "slow_threshold": "thresholds live in calibration['thresholds']['slow']",
    "stop_threshold": "thresholds live in calibration['thresholds']['stop']",
}


def check_calibration_gate_section(section: Any) -> dict[str, Any]:
    """The ``gate`` section of a calibration file, or ``ValueError`` naming the offending key.

    Why strict: the section used to be silently ignored for deployed monitors, so a file that
    said ``shadow: true`` or ``reopen_afer: 5`` looked configured and was not. Now every key is
    either honoured (:data:`CALIBRATION_GATE_KEYS`) or refused here, before any gate runs.
    """
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(
            f"calibration['gate'] must be a mapping of GateConfig fields, got "
            f"{type(section).__name__}"
        )
    for key in section:
        if key in REFUSED_CALIBRATION_GATE_KEYS:
            raise ValueError(
                f"calibration['gate'] key {key!r} is refused: {REFUSED_CALIBRATION_GATE_KEYS[key]}"
            )
        if key not in CALIBRATION_GATE_KEYS:
            raise ValueError(
                f"calibration['gate'] has unknown key {key!r}; known: {sorted(CALIBRATION_GATE_KEYS)}"
            )
    return dict(section)


def _is_number(v: Any) -> bool:
    """A real number, numpy scalars included (a Monitor's risk is often np.float32), no bools."""
    return isinstance(v, Real | np.floating | np.integer) and not isinstance(v, bool | np.bool_)


@dataclass(frozen=True)
class GateConfig:
    """Gate parameters. Validated on construction (fail fast at start-up, not in the loop).

    Attributes:
        slow_threshold: risk above which the gate slows (from calibration).
        stop_threshold: risk above which the gate stops (from calibration); must be >= slow.
            "Above", strictly: split-conformal thresholds are an order statistic of calibration
            risks and guarantee P(risk > threshold) <= alpha, so equality must not alarm.
        reopen_after: N consecutive confident decisions needed to step down one level (>= 1).
        image_timeout_s: image older than this (caller clock) → STOP ``stale_image``.
        action_timeout_s: action chunk older than this → STOP ``stale_actions``.
        decision_timeout_s: no accepted assessment for this long → STOP ``backend_timeout``.
        max_clock_skew_s: an input stamp ahead of the clock by more than this → STOP
            ``future_stamp`` (a camera on wall time and a node on sim time would otherwise never
            look stale).
        enabled: False → always PROCEED with ``monitor_disabled``.
        shadow: compute and report decisions but expose ``effective_decision = PROCEED``.
    """

    slow_threshold: float
    stop_threshold: float
    reopen_after: int = 3
    image_timeout_s: float = 0.5
    action_timeout_s: float = 1.0
    decision_timeout_s: float = 1.0
    max_clock_skew_s: float = 0.5
    enabled: bool = True
    shadow: bool = False

    def __post_init__(self) -> None:
        for name in ("slow_threshold", "stop_threshold"):
            v = getattr(self, name)
            if not _is_number(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"GateConfig.{name} must be a number in [0, 1], got {v!r}")
        if self.slow_threshold > self.stop_threshold:
            raise ValueError(
                f"GateConfig.slow_threshold ({self.slow_threshold}) must be <= stop_threshold "
                f"({self.stop_threshold})"
            )
        if isinstance(self.reopen_after, bool) or not isinstance(self.reopen_after, int):
            raise ValueError(f"GateConfig.reopen_after must be an int, got {self.reopen_after!r}")
        if self.reopen_after < 1:
            raise ValueError(f"GateConfig.reopen_after must be >= 1, got {self.reopen_after}")
        for name in ("image_timeout_s", "action_timeout_s", "decision_timeout_s"):
            v = getattr(self, name)
            if not _is_number(v) or not (0 < v < math.inf):
                raise ValueError(f"GateConfig.{name} must be a finite number > 0, got {v!r}")
        v = self.max_clock_skew_s
        if not _is_number(v) or not (0 <= v < math.inf):
            raise ValueError(f"GateConfig.max_clock_skew_s must be finite and >= 0, got {v!r}")

    @classmethod
    def from_calibration(cls, calibration: Mapping[str, Any], **overrides: Any) -> GateConfig:
        """Build from a bundle's ``calibration.json`` (already parsed).

        Expected keys::

            {
              "thresholds": {"slow": 0.4, "stop": 0.7},   # required, risk in [0, 1]
              "gate": {"reopen_after": 3, "image_timeout_s": 0.5, ...},  # optional, see below
              ...                                           # anything else (epsilon, target
            }                                               # false-alarm rate, data) is ignored

        ``gate`` may set only :data:`CALIBRATION_GATE_KEYS` (honoured); ``shadow``, ``enabled``
        and threshold fields are refused (:data:`REFUSED_CALIBRATION_GATE_KEYS`), unknown keys
        too (:func:`check_calibration_gate_section`). ``overrides`` (any GateConfig field, e.g.
        from ROS parameters) win over the file. Missing thresholds or unknown field names raise
        ``ValueError`` naming the key.
        """
        thresholds = calibration.get("thresholds") if isinstance(calibration, Mapping) else None
        if not isinstance(thresholds, Mapping):
            raise ValueError("calibration['thresholds'] is missing or not a mapping")
        kwargs: dict[str, Any] = {}
        for key, field_name in (("slow", "slow_threshold"), ("stop", "stop_threshold")):
            if key not in thresholds:
                raise ValueError(f"calibration['thresholds']['{key}'] is missing")
            kwargs[field_name] = thresholds[key]
        kwargs.update(check_calibration_gate_section(calibration.get("gate")))
        kwargs.update(overrides)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown GateConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)


@dataclass
class _Fault:
    detail: str
    stamp: float | None
    stream: str | None  # cleared by the next accepted input on this stream; None: by an update


class Gate:
    """Fail-closed gate state machine with hysteresis and a watchdog (see module docstring).

    All public methods return the new :class:`GateStatus` and never raise.
    """

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        #: log cause transitions (off for replay's shadow session, whose gate sees dummy
        #: assessments: its log lines would only repeat or contradict the real gate's)
        self.log_transitions = True
        self._lock = threading.RLock()
        self._enabled = bool(config.enabled)
        self._now: float | None = None
        self._boot: float | None = None
        self._last_input: dict[str, float | None] = {s: None for s in STREAMS}
        self._last_decision: float | None = None
        self._last_assessment_stamp: float | None = None
        self._started = False
        self._level = Decision.STOP
        self._below = 0
        self._model_reason = Reason.not_started
        self._model_detail = "no good assessment yet"
        self._risk: float | None = None
        self._faults: dict[Reason, _Fault] = {}
        self._counters: dict[str, int] = {}
        self._active: dict[Reason, str] = {}
        self._since: float | None = None
        self._status = GateStatus(Decision.STOP, Decision.STOP, (Reason.not_started,))
        self._run(lambda: None)

    # ---- public API (never raises) ----------------------------------------------------------

    def update(self, assessment: Assessment, now: float | None = None) -> GateStatus:
        """Feed one model assessment. ``now`` (caller clock, optional) is when it completed; it
        feeds the decision watchdog and defaults to ``assessment.stamp``.

        An assessment with ``risk=None`` and ``reasons`` is treated as a fault report for those
        reasons; a malformed one (non-finite / out-of-range risk, bad stamp) closes the gate
        with ``invalid_assessment``; one older than the previous is ``out_of_order_stamp``.
        """
        return self._run(self._do_update, assessment, now)

    def report_fault(
        self,
        reason: Reason,
        detail: str = "",
        stamp: float | None = None,
        *,
        stream: str | None = None,
    ) -> GateStatus:
        """Close the gate now for a non-model cause (bad input, backend exception, ...).

        With ``stream`` (``"image"`` / ``"actions"``) the cause clears on that stream's next
        accepted input; without, on the next accepted assessment. Recovery to PROCEED then still
        needs ``reopen_after`` confident decisions per level.
        """
        return self._run(self._do_fault, reason, detail, stamp, stream)

    def report_input_error(self, error: InputError, stamp: float | None = None) -> GateStatus:
        """``report_fault`` for an :class:`InputError` from ``inputs.py`` (stream = its input)."""
        stream = error.input if error.input in STREAMS else None
        return self._run(self._do_fault, error.reason, error.detail, stamp, stream)

    def note_input(self, stream: str, stamp: float) -> GateStatus:
        """Record an accepted input's stamp on ``stream`` (``"image"`` / ``"actions"``) for the
        staleness watchdog. A stamp older than the previous one on the stream closes the gate
        with ``out_of_order_stamp``; a non-finite one with ``non_finite_input``. Equal stamps
        are accepted here (the buffer decides about duplicates)."""
        return self._run(self._do_note_input, stream, stamp)

    def tick(self, now: float) -> GateStatus:
        """Run the watchdog at caller-clock time ``now`` (seconds, same clock as the stamps).

        A clock that goes backwards (sim reset, looping bag) closes the gate with ``clock_jump``
        and forgets all input stamps, so fresh inputs are needed before it can reopen.
        """
        return self._run(self._do_tick, now)

    def set_enabled(self, enabled: bool) -> GateStatus:
        """Switch the monitor on/off at run time. Re-enabling starts again from boot (STOP,
        ``not_started``): whatever was decided while disabled was not being enforced."""
        return self._run(self._do_set_enabled, enabled)

    def status(self) -> GateStatus:
        """The current status snapshot (computed at the last event; cheap, never raises)."""
        try:
            with self._lock:
                return self._status
        except Exception:  # pragma: no cover - defensive
            return self._failsafe_status("status() failed")

    @property
    def effective_decision(self) -> Decision:
        return self.status().effective_decision

    @property
    def clock(self) -> float | None:
        """The latest caller-clock time the gate has seen (None before any)."""
        return self._now

    # ---- machinery --------------------------------------------------------------------------

    def _run(self, fn: Callable[..., float | None], *args: Any) -> GateStatus:
        try:
            with self._lock:
                try:
                    event_time = fn(*args)
                    self._settle(event_time)
                except Exception as exc:
                    self._internal_error(exc)
                return self._status
        except Exception as exc:  # pragma: no cover - only if even the fallback path fails
            return self._failsafe_status(f"{type(exc).__name__}: {exc}")

    def _count(self, key: str, n: int = 1) -> None:
        self._counters[key] = self._counters.get(key, 0) + n

    def _failsafe_status(self, detail: str) -> GateStatus:
        """A STOP status built without touching any state that might be broken."""
        try:
            open_anyway = bool(self.config.shadow) or not bool(self._enabled)
        except Exception:  # pragma: no cover - defensive
            open_anyway = False
        return GateStatus(
            decision=Decision.STOP,
            effective_decision=Decision.PROCEED if open_anyway else Decision.STOP,
            reasons=(Reason.internal_error,),
            details={Reason.internal_error.value: detail},
        )

    def _internal_error(self, exc: Exception) -> None:
        detail = f"{type(exc).__name__}: {exc}"
        try:
            self._count("internal_errors")
            if Reason.internal_error not in self._faults:
                logger.exception("gate internal error, closing the gate: %s", detail)
            self._faults[Reason.internal_error] = _Fault(detail, self._now, None)
            self._level, self._below = Decision.STOP, 0
            self._settle(self._now)
        except Exception:
            self._status = self._failsafe_status(detail)

    def _advance_clock(self, now: Any) -> float:
        t = validate_stamp(now, name="clock", allow_equal=True)
        if self._boot is None:
            self._boot = t
        elif self._now is not None and t < self._now:
            self._faults[Reason.clock_jump] = _Fault(
                f"clock went back from {self._now:.6f} to {t:.6f}; input stamps forgotten", t, None
            )
            self._count("faults")
            self._count(f"faults.{Reason.clock_jump.value}")
            self._last_input = {s: None for s in STREAMS}
            self._last_decision = None
            self._last_assessment_stamp = None
            self._boot = t
        self._now = t
        return t

    def _add_fault(
        self, reason: Reason, detail: str, stamp: float | None, stream: str | None
    ) -> None:
        self._count("faults")
        self._count(f"faults.{reason.value}")
        self._faults[reason] = _Fault(detail or reason.value, stamp, stream)
        self._level, self._below = Decision.STOP, 0

    def _do_tick(self, now: Any) -> float | None:
        self._count("ticks")
        try:
            return self._advance_clock(now)
        except InputError as err:
            self._add_fault(err.reason, f"tick: {err.detail}", None, None)
            return self._now

    def _do_fault(self, reason: Any, detail: Any, stamp: Any, stream: Any) -> float | None:
        try:
            reason = Reason(reason)
        except ValueError:
            detail = f"unknown fault reason {reason!r}: {detail}"
            reason = Reason.internal_error
        if reason in _MODEL_REASONS or reason is Reason.monitor_disabled:
            detail = f"report_fault called with non-fault reason {reason.value!r}: {detail}"
            reason = Reason.internal_error
        if stream is not None and stream not in STREAMS:
            detail = f"{detail} (unknown stream {stream!r})"
            stream = None
        try:
            t: float | None = validate_stamp(stamp, name="fault", allow_equal=True)
        except InputError:
            t = None
        self._add_fault(reason, str(detail), t, stream)
        return t if t is not None else self._now

    def _do_note_input(self, stream: Any, stamp: Any) -> float | None:
        if stream not in STREAMS:
            self._add_fault(
                Reason.internal_error, f"note_input: unknown stream {stream!r}", None, None
            )
            return self._now
        self._count(f"inputs.{stream}")
        try:
            t = validate_stamp(stamp, name=stream, last=self._last_input[stream], allow_equal=True)
        except InputError as err:
            self._count(f"inputs_rejected.{stream}")
            self._add_fault(err.reason, err.detail, None, stream)
            return self._now
        self._last_input[stream] = t
        for reason in [r for r, f in self._faults.items() if f.stream == stream]:
            del self._faults[reason]
        return t

    def _do_set_enabled(self, enabled: Any) -> float | None:
        enabled = bool(enabled)
        if enabled and not self._enabled:
            self._started, self._level, self._below = False, Decision.STOP, 0
            self._model_reason, self._model_detail = Reason.not_started, "re-enabled"
        self._enabled = enabled
        return self._now

    def _instantaneous(self, risk: float) -> Decision:
        if risk > self.config.stop_threshold:
            return Decision.STOP
        if risk > self.config.slow_threshold:
            return Decision.SLOW
        return Decision.PROCEED

    def _do_update(self, a: Any, now: Any) -> float | None:
        self._count("updates")
        if not isinstance(a, Assessment):
            return self._reject(Reason.invalid_assessment, f"not an Assessment: {type(a)}")
        try:
            t = validate_stamp(a.stamp, name="assessment", allow_equal=True)
        except InputError as err:
            return self._reject(Reason.invalid_assessment, f"bad stamp: {err.detail}")
        if a.risk is None:
            try:
                causes = [Reason(r) for r in a.reasons]
            except ValueError as exc:
                return self._reject(Reason.invalid_assessment, f"unknown reason: {exc}")
            causes = [r for r in causes if r not in _MODEL_REASONS]
            if not causes:
                return self._reject(
                    Reason.invalid_assessment, "risk is None and no non-model reason given"
                )
            for r in causes:
                self._add_fault(r, a.detail or r.value, t, None)
            self._count("assessments_rejected")
            return self._now
        risk = a.risk
        if not _is_number(risk):
            return self._reject(Reason.invalid_assessment, f"risk is not a number: {risk!r}")
        risk = float(risk)
        if not (math.isfinite(risk) and 0.0 <= risk <= 1.0):
            return self._reject(Reason.invalid_assessment, f"risk {risk!r} not in [0, 1]")
        decision_time = t
        if now is not None:
            try:
                decision_time = validate_stamp(now, name="clock", allow_equal=True)
            except InputError as err:
                return self._reject(Reason.invalid_assessment, f"bad completion time: {err.detail}")
            if self._now is not None and decision_time < self._now:
                # the clock went back while this was computed: latch clock_jump, drop the result
                self._advance_clock(decision_time)
                self._count("assessments_rejected")
                return decision_time
        if self._last_assessment_stamp is not None and t < self._last_assessment_stamp:
            return self._reject(
                Reason.out_of_order_stamp,
                f"assessment stamp {t:.6f} older than previous {self._last_assessment_stamp:.6f}",
            )

        # accepted: clears stream-less faults (the clock only moves forward here)
        self._count("assessments_accepted")
        for reason in [r for r, f in self._faults.items() if f.stream is None]:
            del self._faults[reason]
        if now is not None:
            self._advance_clock(decision_time)
        self._last_assessment_stamp = t
        if self._last_decision is None or decision_time > self._last_decision:
            self._last_decision = decision_time
        self._risk = risk
        d = self._instantaneous(risk)
        cfg = self.config
        if self._faults or self._watchdog():
            # inputs unhealthy: this assessment cannot open the gate (level forced in _settle)
            return decision_time
        if not self._started:
            self._started, self._level, self._below = True, d, 0
        elif d >= self._level:
            self._level, self._below = d, 0
        else:
            self._below += 1
            if self._below >= cfg.reopen_after:
                self._level, self._below = Decision(self._level - 1), 0
        if d >= self._level:
            self._model_reason = {
                Decision.STOP: Reason.risk_high,
                Decision.SLOW: Reason.risk_elevated,
                Decision.PROCEED: Reason.ok,
            }[self._level]
            thr = cfg.stop_threshold if self._level is Decision.STOP else cfg.slow_threshold
            self._model_detail = f"risk {format_risk(risk)} (threshold {format_risk(thr)})"
        else:
            thr = cfg.stop_threshold if self._level is Decision.STOP else cfg.slow_threshold
            self._model_reason = Reason.hysteresis_hold
            self._model_detail = (
                f"risk {format_risk(risk)} <= {format_risk(thr)} for "
                f"{self._below}/{cfg.reopen_after} decisions"
            )
        return decision_time

    def _reject(self, reason: Reason, detail: str) -> float | None:
        self._count("assessments_rejected")
        self._add_fault(reason, detail, None, None)
        return self._now

    def _watchdog(self) -> dict[Reason, str]:
        """Staleness causes at the current caller-clock time (empty before the first tick)."""
        now, cfg = self._now, self.config
        out: dict[Reason, str] = {}
        if now is None:
            return out
        for stream, timeout, missing, stale in (
            (IMAGE, cfg.image_timeout_s, Reason.no_image_yet, Reason.stale_image),
            (ACTIONS, cfg.action_timeout_s, Reason.no_actions_yet, Reason.stale_actions),
        ):
            last = self._last_input[stream]
            if last is None:
                out[missing] = f"no {stream} received (clock {now:.3f})"
                continue
            age = now - last
            if age > timeout:
                out[stale] = f"last {stream} is {age:.3f} s old > {timeout} s"
            elif -age > cfg.max_clock_skew_s:
                out[Reason.future_stamp] = (
                    f"{stream} stamp {last:.3f} is {-age:.3f} s ahead of the clock {now:.3f}"
                )
        ref = self._last_decision if self._last_decision is not None else self._boot
        if ref is not None and now - ref > cfg.decision_timeout_s:
            what = "last accepted assessment" if self._last_decision is not None else "start"
            out[Reason.backend_timeout] = (
                f"{now - ref:.3f} s since {what} > {cfg.decision_timeout_s} s"
            )
        return out

    def _settle(self, event_time: float | None) -> None:
        """Recompute the active causes and the status snapshot after an event."""
        causes: dict[Reason, str] = {r: f.detail for r, f in self._faults.items()}
        for r, detail in self._watchdog().items():
            causes.setdefault(r, detail)
        if causes:
            self._level, self._below = Decision.STOP, 0
            if self._started:
                self._model_reason = Reason.hysteresis_hold
                self._model_detail = f"closed by {', '.join(r.value for r in causes)}; 0/" + str(
                    self.config.reopen_after
                )
        decision = most_restrictive(self._level, *(Decision.STOP for _ in causes))
        active = dict(causes)
        if self._model_reason is not Reason.ok or not active:
            active[self._model_reason] = self._model_detail
        if decision is Decision.PROCEED:
            active = {Reason.ok: self._model_detail}

        if not self._enabled:
            reasons: tuple[Reason, ...] = (Reason.monitor_disabled,)
            details = {Reason.monitor_disabled.value: "enabled=False: commands are not gated"}
            decision = effective = Decision.PROCEED
        else:
            reasons = tuple(active)
            details = {r.value: d for r, d in active.items()}
            effective = Decision.PROCEED if self.config.shadow else decision

        if self.log_transitions:
            self._log_transitions(active, decision)
        if decision is not self._status.decision or self._since is None:
            if decision is not self._status.decision:
                self._count("transitions")
            self._since = event_time if event_time is not None else self._now
        self._active = active
        self._status = GateStatus(
            decision=decision,
            effective_decision=effective,
            reasons=reasons,
            details=details,
            since=self._since,
            risk=self._risk,
            shadow=bool(self.config.shadow),
            enabled=self._enabled,
            counters=dict(self._counters),
        )

    def _log_transitions(self, active: dict[Reason, str], decision: Decision) -> None:
        """Log once per cause transition (not per message): new causes warn, cleared ones info."""
        for r in active.keys() - self._active.keys():
            if r is Reason.ok:
                continue
            quiet = r in _MODEL_REASONS and r is not Reason.risk_high
            log = logger.info if quiet else logger.warning
            log("gate cause active: %s (%s)", r.value, active[r])
        for r in self._active.keys() - active.keys():
            if r is not Reason.ok:
                logger.info("gate cause cleared: %s", r.value)
        if decision is not self._status.decision:
            logger.info("gate decision %s -> %s", self._status.decision.name, decision.name)
