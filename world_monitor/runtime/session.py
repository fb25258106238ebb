"""MonitorSession: the one place where buffering, decision scheduling and bookkeeping live.

Why: the ROS node and offline replay must behave identically (a bag replayed offline has to
close the lock exactly where the live node would have). Both only *convert* messages and
*schedule* calls; everything that decides what happens with an input lives here:

* an :class:`~world_monitor.runtime.inputs.InputBuffer` (k context frames + the latest chunk),
* the :class:`~world_monitor.runtime.gate.Gate` (fail closed, hysteresis, watchdog),
* the :class:`~world_monitor.runtime.inputs.InputAccounting` (every input accounted for),
* the decision policy: one decision per new accepted action chunk (default) and/or a fixed
  rate on the caller's clock,
* latency statistics (p50/p95 per stage from ``Assessment.latency_ms``), alerts and a
  JSON-ready :meth:`MonitorSession.summary`,
* the mapping from a gate status to a ``/diagnostics`` level (:func:`diagnostic_status`).

Pure Python + numpy (no rclpy, no torch). Every public method catches its own failures and turns
them into a closed gate (``internal_error``): the caller is a sensor callback or a replay loop
that must never die on a bad message.

Event protocol (the node and replay do exactly this)::

    session.on_image(frame, stamp, encoding, tag=header)    # per camera message
    session.on_actions(chunk, stamp)                        # per action-chunk message
    session.reject_input("image", Reason.invalid_image, detail, stamp)   # undecodable message
    status = session.tick(now)                              # heartbeat / watchdog
    if session.decision_due(now):
        result = session.decide(now)                        # worker thread in the node
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from world_monitor.runtime.gate import Gate, GateConfig
from world_monitor.runtime.inputs import (
    ACTIONS,
    IMAGE,
    STREAMS,
    ActionRange,
    InputAccounting,
    InputBuffer,
    InputError,
    validate_stamp,
)
from world_monitor.runtime.protocol import MonitorLike
from world_monitor.runtime.types import Assessment, Decision, GateStatus, Reason, json_float

__all__ = [
    "DIAG_ERROR",
    "DIAG_OK",
    "DIAG_STALE",
    "DIAG_WARN",
    "DecisionResult",
    "MonitorSession",
    "SessionConfig",
    "diagnostic_status",
    "gate_config_for",
    "latency_stats",
]

logger = logging.getLogger(__name__)

# diagnostic_msgs/DiagnosticStatus levels (byte values of the message constants)
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3

#: reasons meaning "inputs are not (yet) arriving": diagnostics STALE
_STALE_REASONS = frozenset(
    {
        Reason.not_started,
        Reason.no_image_yet,
        Reason.no_actions_yet,
        Reason.stale_image,
        Reason.stale_actions,
        Reason.backend_timeout,
        Reason.context_gap,
    }
)
#: reasons meaning "the monitor works and the gate is closed because of risk": WARN
_RISK_REASONS = frozenset({Reason.risk_high, Reason.risk_elevated, Reason.hysteresis_hold})
#: reasons that only describe start-up, not an alert
_BOOT_REASONS = frozenset({Reason.not_started, Reason.no_image_yet, Reason.no_actions_yet})


@dataclass(frozen=True)
class SessionConfig:
    """Decision scheduling and bookkeeping.

    Attributes:
        per_chunk: decide once per newly accepted action chunk (the policy's own rhythm: every
            chunk is checked before it runs, none twice).
        decision_rate_hz: additionally (or, with ``per_chunk=False``, only) decide at this
            rate on the caller's clock, re-using the latest chunk. 0 disables.
        allow_equal_stamps: accept an input stamp equal to the previous one on its stream.
        latency_window: how many recent samples per stage the latency statistics keep.
        keep_decisions: keep every decision record for :meth:`MonitorSession.summary`
            (replay: yes; a long-running node: no, memory would grow without bound).
        measure_wall_time: also record the wall-clock duration of ``monitor.assess`` as stage
            ``"session_total"``. Off in replay so its summary is deterministic.
        commands_follow_gate: the robot's commands really pass through this gate (the node's
            relay, a twist_mux lock, the closed-loop simulator), so whenever the effective
            decision is SLOW/STOP the monitor is told the last rollouts no longer describe what
            the robot did (``monitor.interrupt()``, for the ``motion`` signal). False in replay:
            the recorded robot ran unmodified whatever the replayed gate says.
        slow_action_scale: how the relay changes the policy's commands on SLOW: the action
            dimensions ``slow_action_dims`` are multiplied by this (the closed-loop simulator
            scales the end-effector deltas). With both set (and ``commands_follow_gate``), each
            rollout is conditioned on the commands *as they will run* under the gate's enforced
            decision, so a steady SLOW keeps the ``motion`` evidence instead of forgetting it
            at every decision; only a change of the enforced decision (or a STOP) makes the
            stored rollouts stale. Why: measured in ``evaluate-policy``, a weak-motor robot
            that the gate slowed on motion evidence was never stopped, because forgetting the
            rollouts froze that evidence below the STOP threshold while the slowed robot ran
            out of time. ``None`` (the default; the node's Twist relay) = unknown mapping:
            every SLOW/STOP interrupts.
        slow_action_dims: the action dimensions ``slow_action_scale`` applies to.
        context_period_tolerance: how far (relative, in (0, 1)) the spacing of consecutive
            context frames may differ from the monitor's ``frame_period_s`` (the camera period
            the bundle was calibrated at) before the context restarts and decisions say
            ``context_gap``. 0.5 accepts jitter up to half a period and catches a dropped
            frame (2x) or a slower camera; frames sooner than ``(1 - tolerance)`` periods
            after the last kept one are skipped (a faster camera is subsampled, counted in
            ``counts.frames_decimated``). Monitors without ``frame_period_s`` (test
            fakes) are not checked.
    """

    per_chunk: bool = True
    decision_rate_hz: float = 0.0
    allow_equal_stamps: bool = False
    latency_window: int = 10_000
    keep_decisions: bool = True
    measure_wall_time: bool = False
    commands_follow_gate: bool = True
    slow_action_scale: float | None = None
    slow_action_dims: tuple[int, ...] = ()
    context_period_tolerance: float = 0.5

    def __post_init__(self) -> None:
        tol = self.context_period_tolerance
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 < tol < 1:
            raise ValueError(f"context_period_tolerance must be in (0, 1), got {tol!r}")
        scale = self.slow_action_scale
        if scale is not None:
            if isinstance(scale, bool) or not isinstance(scale, int | float):
                raise ValueError(f"slow_action_scale must be a number, got {scale!r}")
            if not 0.0 <= float(scale) <= 1.0:
                raise ValueError(f"slow_action_scale must be in [0, 1], got {scale}")
            if not self.slow_action_dims:
                raise ValueError("slow_action_scale needs slow_action_dims (which dims it scales)")
        dims = tuple(self.slow_action_dims)
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in dims):
            raise ValueError(f"slow_action_dims must be non-negative integers, got {dims!r}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"slow_action_dims has repeated dimensions: {dims!r}")
        rate = self.decision_rate_hz
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise ValueError(f"decision_rate_hz must be a finite number, got {rate!r}")
        if rate < 0:
            raise ValueError(f"decision_rate_hz must be >= 0, got {rate}")
        if not self.per_chunk and rate == 0:
            raise ValueError("no decision policy: set per_chunk=True and/or decision_rate_hz > 0")
        if int(self.latency_window) < 1:
            raise ValueError(f"latency_window must be >= 1, got {self.latency_window}")


@dataclass(frozen=True)
class DecisionResult:
    """Outcome of one :meth:`MonitorSession.decide` call.

    Attributes:
        now: caller-clock time the decision completed at.
        status: the gate status after it.
        assessment: the gated assessment (``None`` when no assessment was produced: missing
            inputs or a backend exception).
        tag: the caller's tag of the newest context frame (e.g. the camera header, so the
            heatmap can reuse it), ``None`` without an assessment.
        image_hw: (H, W) of the context frames (heatmap size), ``None`` without inputs.
        error: why no assessment was produced (reason value), ``None`` otherwise.
    """

    now: float
    status: GateStatus
    assessment: Assessment | None = None
    tag: Any = None
    image_hw: tuple[int, int] | None = None
    error: str | None = None


def gate_config_for(monitor: MonitorLike, **overrides: Any) -> GateConfig:
    """The gate configuration for ``monitor``: its calibration (a ``calibration.json`` mapping,
    or the real Monitor's ``RiskCalibration`` whose ``info`` holds the file's other sections)
    else its thresholds, with ``overrides`` (GateConfig field names, e.g. from ROS parameters)
    winning.

    Why the RiskCalibration branch: the real Monitor's ``calibration`` is not a mapping, so the
    file's ``gate`` section used to be silently ignored for every deployed monitor. Its known
    keys are now honoured (and refused keys refused) exactly as for a plain mapping."""
    calibration = getattr(monitor, "calibration", None)
    if isinstance(calibration, Mapping) and "thresholds" in calibration:
        return GateConfig.from_calibration(calibration, **overrides)
    info = getattr(calibration, "info", None)
    if calibration is not None and isinstance(info, Mapping):
        as_file: dict[str, Any] = {
            "thresholds": {
                "slow": float(calibration.slow_threshold),
                "stop": float(calibration.stop_threshold),
            }
        }
        if "gate" in info:
            as_file["gate"] = info["gate"]
        return GateConfig.from_calibration(as_file, **overrides)
    kwargs: dict[str, Any] = {
        "slow_threshold": float(monitor.slow_threshold),
        "stop_threshold": float(monitor.stop_threshold),
    }
    kwargs.update(overrides)
    return GateConfig(**kwargs)


def latency_stats(samples: Mapping[str, Any]) -> dict[str, dict[str, float | int | None]]:
    """p50/p95/mean/max (ms) and count per stage; deterministic for deterministic input."""
    out: dict[str, dict[str, float | int | None]] = {}
    for stage in sorted(samples):
        arr = np.asarray(list(samples[stage]), dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            out[stage] = {"n": 0, "p50": None, "p95": None, "mean": None, "max": None}
            continue
        out[stage] = {
            "n": int(arr.size),
            "p50": float(np.percentile(arr, 50)),
            "p95": float(np.percentile(arr, 95)),
            "mean": float(arr.mean()),
            "max": float(arr.max()),
        }
    return out


def diagnostic_status(
    status: GateStatus,
    *,
    backend: str = "",
    latency: Mapping[str, Mapping[str, Any]] | None = None,
    accounting: Mapping[str, Mapping[str, Any]] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> tuple[int, str, list[tuple[str, str]]]:
    """``(level, message, key_values)`` for ``/diagnostics``, shared by node and replay.

    Levels describe the *monitor's* health, not the robot's: ERROR for faults (backend
    exception, bad input, internal error, clock jump), STALE while inputs are missing or late,
    WARN while the gate holds the policy because of risk (the monitor works; an operator should
    look) or while shadow/disabled (commands are not being gated), OK otherwise. The most severe
    active cause wins (ERROR > STALE > WARN > OK). ``calibration``
    (:meth:`~world_monitor.runtime.monitor.Monitor.calibration_drift`) adds
    ``calibration_drift``: WARN while the model's recent confidence has been wrong beyond
    anything seen at calibration (the false-stop bound may no longer hold here).
    """
    level = DIAG_OK
    rank = {DIAG_OK: 0, DIAG_WARN: 1, DIAG_STALE: 2, DIAG_ERROR: 3}
    for r in status.reasons:
        if r is Reason.ok:
            lv = DIAG_OK
        elif r in _RISK_REASONS or r is Reason.monitor_disabled:
            lv = DIAG_WARN
        elif r in _STALE_REASONS:
            lv = DIAG_STALE
        else:
            lv = DIAG_ERROR
        if rank[lv] > rank[level]:
            level = lv
    if (status.shadow or not status.enabled) and rank[level] < rank[DIAG_WARN]:
        level = DIAG_WARN
    drift = bool(calibration and calibration.get("drift"))
    if drift and rank[level] < rank[DIAG_WARN]:
        level = DIAG_WARN
    reasons = ", ".join(r.value for r in status.reasons)
    message = f"{status.decision.name} ({reasons})"
    if status.shadow:
        message += " [shadow: not enforced]"
    if drift:
        message += " [calibration_drift]"
    values: list[tuple[str, str]] = [
        ("decision", status.decision.name),
        ("effective_decision", status.effective_decision.name),
        ("lock", str(status.lock).lower()),
        ("reasons", reasons),
        ("risk", "none" if status.risk is None else f"{status.risk:.4f}"),
        ("shadow", str(status.shadow).lower()),
        ("enabled", str(status.enabled).lower()),
        ("backend", backend or "none"),
    ]
    values.append(("calibration_drift", "unknown" if not calibration else str(drift).lower()))
    if calibration:
        values.append(("calibration.selfcheck", f"{calibration['selfcheck']:.4f}"))
        values.append(("calibration.bound", f"{calibration['bound']:.4f}"))
    for key in sorted(status.details):
        values.append((f"detail.{key}", str(status.details[key])))
    for stage, st in sorted((latency or {}).items()):
        for q in ("p50", "p95"):
            v = st.get(q)
            values.append((f"latency_ms.{stage}.{q}", "none" if v is None else f"{v:.3f}"))
    for stream, counts in sorted((accounting or {}).items()):
        for key in ("offered", "accepted", "rejected_total", "used", "superseded", "pending"):
            if key in counts:
                values.append((f"inputs.{stream}.{key}", str(counts[key])))
    return level, message, values


@dataclass
class _Alert:
    start: float
    end: float
    decision: Decision
    reasons: set[str] = field(default_factory=set)
    n_decisions: int = 0
    peak_risk: float | None = None
    box: tuple[float, float, float, float] | None = None
    onset_step: int | None = None
    first_assessment_stamp: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": json_float(self.start),
            "end": json_float(self.end),
            "decision": self.decision.name,
            "reasons": sorted(self.reasons),
            "n_decisions": self.n_decisions,
            "peak_risk": json_float(self.peak_risk),
            "box": None if self.box is None else [json_float(v) for v in self.box],
            "onset_step": self.onset_step,
            "first_assessment_stamp": json_float(self.first_assessment_stamp),
        }


class MonitorSession:
    """Buffer + gate + accounting + decision policy around one monitor (see module docstring).

    Thread-safe: input methods may be called from subscription callbacks while :meth:`decide`
    runs on a worker thread and :meth:`tick` on a timer. ``decide`` calls are serialised (one
    inference at a time); input methods never wait for an inference to finish.

    Args:
        monitor: anything implementing :class:`~world_monitor.runtime.protocol.MonitorLike`.
        gate_config: gate parameters (default: :func:`gate_config_for` the monitor).
        config: decision policy and bookkeeping.
        image_hw: expected frame size (default: ``monitor.image_size``).
    """

    def __init__(
        self,
        monitor: MonitorLike,
        gate_config: GateConfig | None = None,
        config: SessionConfig | None = None,
        *,
        image_hw: tuple[int, int] | None = None,
    ) -> None:
        self.monitor = monitor
        self.config = config or SessionConfig()
        self.gate = Gate(gate_config or gate_config_for(monitor))
        self.accounting = InputAccounting(STREAMS)
        hw = image_hw if image_hw is not None else tuple(monitor.image_size)
        # the bundle's contract beyond shapes (optional in MonitorLike; the real Monitor always
        # declares both): the training action range and the calibrated camera period
        action_range = getattr(monitor, "action_range", None)
        if action_range is not None and not isinstance(action_range, ActionRange):
            raise ValueError(f"monitor.action_range must be an ActionRange, got {action_range!r}")
        frame_period = getattr(monitor, "frame_period_s", None)
        self.buffer = InputBuffer(
            int(monitor.context_length),
            (int(hw[0]), int(hw[1])),
            int(monitor.horizon),
            int(monitor.action_dim),
            allow_equal_stamps=self.config.allow_equal_stamps,
            accounting=self.accounting,
            action_range=action_range,
            frame_period_s=None if frame_period is None else float(frame_period),
            period_tolerance=float(self.config.context_period_tolerance),
        )
        self._state_lock = threading.Lock()  # short critical sections (bookkeeping)
        self._decide_lock = threading.Lock()  # one inference at a time
        self._tags: deque[tuple[float, Any]] = deque(maxlen=int(monitor.context_length) + 1)
        self._chunk_pending = False
        self._next_rate_due: float | None = None
        self._latency: dict[str, deque[float]] = {}
        self._decisions: list[dict[str, Any]] = []
        self._alerts: list[_Alert] = []
        self._open_alert: _Alert | None = None
        self._counts: dict[str, int] = {
            "decisions": 0,
            "assessments": 0,
            "backend_errors": 0,
            "input_errors": 0,
            "internal_errors": 0,
            "context_gaps": 0,
            "bad_clock_calls": 0,
            # decisions at which the model's recent confidence was wrong beyond calibration
            # (Monitor.calibration_drift): a WARN on /diagnostics, counted for replay summaries
            "calibration_drift_decisions": 0,
        }
        bad_dims = [d for d in self.config.slow_action_dims if d >= int(monitor.action_dim)]
        if bad_dims:
            raise ValueError(
                f"SessionConfig.slow_action_dims {bad_dims} out of range for the monitor's "
                f"action_dim {int(monitor.action_dim)}"
            )
        self._last_status = self.gate.status()
        #: the enforced level the latest rollout's commands are right for (PROCEED or SLOW)
        self._conditioned_on = Decision.PROCEED
        reset = getattr(monitor, "reset", None)
        if callable(reset):  # a new session is a new episode: no decision history
            reset()

    # ---- inputs (never raise) ---------------------------------------------------------------

    def on_image(
        self, frame: Any, stamp: Any, encoding: str | None = None, *, tag: Any = None
    ) -> GateStatus:
        """Offer one camera frame (uint8 [H, W, 3], rgb8/bgr8). ``tag`` travels with the frame
        (the node/replay pass the camera header so the heatmap reuses it)."""
        try:
            err = self.buffer.offer_frame(frame, stamp, encoding=encoding)
            if err is not None:
                return self._input_error(err, stamp)
            with self._state_lock:
                self._tags.append((float(stamp), tag))
            status = self._remember(self.gate.note_input(IMAGE, float(stamp)))
            gap = self.buffer.pop_context_gap()
            if gap is not None:  # close now; the next good frame clears it, take() says the rest
                with self._state_lock:
                    self._counts["context_gaps"] += 1
                status = self._remember(
                    self.gate.report_fault(Reason.context_gap, gap, float(stamp), stream=IMAGE)
                )
            return status
        except Exception as exc:  # pragma: no cover - defensive: buffer/gate never raise
            return self._internal("on_image", exc)

    def on_actions(self, chunk: Any, stamp: Any) -> GateStatus:
        """Offer one action chunk (float [H, A]); with ``per_chunk`` it makes a decision due."""
        try:
            err = self.buffer.offer_actions(chunk, stamp)
            if err is not None:
                return self._input_error(err, stamp)
            with self._state_lock:
                self._chunk_pending = True
            return self._remember(self.gate.note_input(ACTIONS, float(stamp)))
        except Exception as exc:  # pragma: no cover - defensive
            return self._internal("on_actions", exc)

    def reject_input(
        self, stream: str, reason: Reason | str, detail: str, stamp: float | None = None
    ) -> GateStatus:
        """Account for an input that never reached numpy (undecodable message, wrong type) and
        close the gate on that stream until its next good input."""
        try:
            self.accounting.offered(stream)
            self.accounting.reject(stream, reason)
            err = InputError(stream, Reason(reason), detail)
            return self._input_error(err, stamp)
        except Exception as exc:
            return self._internal("reject_input", exc)

    def _input_error(self, err: InputError, stamp: Any) -> GateStatus:
        with self._state_lock:
            self._counts["input_errors"] += 1
        try:
            t = float(stamp)
            t = t if math.isfinite(t) else None
        except (TypeError, ValueError):
            t = None
        logger.debug("input rejected: %s", err)
        return self._remember(self.gate.report_input_error(err, t))

    # ---- clock ------------------------------------------------------------------------------

    def tick(self, now: float) -> GateStatus:
        """Run the gate's watchdog at caller-clock time ``now`` (heartbeat)."""
        try:
            status = self._remember(self.gate.tick(now))  # a bad ``now`` is the gate's fault
            try:
                t = validate_stamp(now, name="clock", allow_equal=True)
            except InputError:
                return status
            with self._state_lock:  # the watchdog can start/end an alert between decisions
                self._track_alert(t, status, None, decision=False)
            return status
        except Exception as exc:  # pragma: no cover - gate.tick never raises
            return self._internal("tick", exc)

    def decision_due(self, now: float) -> bool:
        """Whether the policy wants a decision at ``now``: a new chunk arrived (``per_chunk``)
        or the rate period elapsed (``decision_rate_hz``)."""
        try:
            with self._state_lock:
                if self.config.per_chunk and self._chunk_pending:
                    return True
                if self.config.decision_rate_hz > 0:
                    return self._next_rate_due is None or now >= self._next_rate_due
                return False
        except Exception:  # pragma: no cover - defensive
            return False

    def decide(self, now: float, *, clock: Callable[[], float] | None = None) -> DecisionResult:
        """Take the buffered inputs, assess them, feed the gate. Never raises.

        ``now`` is the caller-clock time the decision starts at. With ``clock`` (the node's
        clock), the gate is told the time *after* inference, so slow inference ages the inputs
        exactly as it does on the robot; without it (replay) inference takes no time.
        Missing inputs → ``no_*_yet``; a monitor exception → ``backend_error``; a ``now`` that
        is not a finite time (``None``, a string, NaN: caller misuse) → STOP with
        ``invalid_stamp`` / ``non_finite_input``, counted in ``bad_clock_calls``, no decision.
        """
        try:
            t = validate_stamp(now, name="clock", allow_equal=True)
        except InputError as err:
            return self._bad_clock("decide", err)
        except Exception as exc:  # pragma: no cover - validate_stamp only raises InputError
            status = self._internal("decide", exc)
            return DecisionResult(math.nan, status, error=Reason.internal_error.value)
        try:
            with self._decide_lock:
                return self._decide(t, clock)
        except Exception as exc:
            status = self._internal("decide", exc)
            return DecisionResult(t, status, error=Reason.internal_error.value)

    def _bad_clock(self, where: str, err: InputError) -> DecisionResult:
        """Close the gate for a caller whose clock value is not a time (never raises)."""
        with self._state_lock:
            self._counts["bad_clock_calls"] += 1
        status = self._remember(self.gate.report_fault(err.reason, f"{where}: {err.detail}"))
        known = self.gate.clock
        return DecisionResult(math.nan if known is None else known, status, error=err.reason.value)

    def _decide(self, now: float, clock: Callable[[], float] | None) -> DecisionResult:
        with self._state_lock:
            self._chunk_pending = False
            period = 1.0 / self.config.decision_rate_hz if self.config.decision_rate_hz else 0.0
            if period:
                nxt = self._next_rate_due if self._next_rate_due is not None else now
                if nxt <= now:  # fixed phase, no drift; skipped periods are not made up
                    # arithmetic, not a loop: a clock jump (1e9 s, 1e300) must cost O(1)
                    # (found by tests/adversarial: the loop never ended at 1e300)
                    nxt += (math.floor((now - nxt) / period) + 1) * period
                    if nxt <= now:  # float resolution at huge times
                        nxt = math.nextafter(now, math.inf) if now + period <= now else now + period
                self._next_rate_due = nxt
            self._counts["decisions"] += 1
        try:
            inputs = self.buffer.take()
        except InputError as err:
            status = self._remember(self.gate.report_input_error(err, None))
            status = self._remember(self.gate.tick(now))
            self._record(now, status, None)
            return DecisionResult(float(now), status, error=err.reason.value)
        actions, self._conditioned_on = self._as_executed(
            inputs.actions, self._last_status.effective_decision
        )
        wall0 = time.perf_counter()
        try:
            assessment = self.monitor.assess(inputs.frames, actions, inputs.stamp)
        except Exception as exc:
            with self._state_lock:
                self._counts["backend_errors"] += 1
            logger.warning("monitor.assess failed: %s: %s", type(exc).__name__, exc)
            status = self._remember(
                self.gate.report_fault(
                    Reason.backend_error, f"{type(exc).__name__}: {exc}", inputs.stamp
                )
            )
            if clock is not None:
                now = max(float(now), float(clock()))
            status = self._remember(self.gate.tick(now))
            self._record(now, status, None)
            return DecisionResult(
                float(now),
                status,
                image_hw=tuple(inputs.frames.shape[1:3]),
                error=Reason.backend_error.value,
            )
        wall_ms = (time.perf_counter() - wall0) * 1e3
        if clock is not None:
            now = max(float(now), float(clock()))
        status = self._remember(self.gate.update(assessment, now=now))
        gated = assessment.with_gate(status) if isinstance(assessment, Assessment) else None
        drift = self._calibration_drift()
        with self._state_lock:
            self._counts["assessments"] += 1
            if drift and drift["drift"]:
                self._counts["calibration_drift_decisions"] += 1
            stages = dict(getattr(assessment, "latency_ms", {}) or {})
            if self.config.measure_wall_time:
                stages["session_total"] = wall_ms
            for stage, ms in stages.items():
                try:
                    v = float(ms)
                except (TypeError, ValueError):
                    continue
                dq = self._latency.get(str(stage))
                if dq is None:
                    dq = self._latency[str(stage)] = deque(maxlen=int(self.config.latency_window))
                dq.append(v)
            tag = None
            for t, tg in self._tags:
                if t == inputs.stamp:
                    tag = tg
        self._record(now, status, gated)
        return DecisionResult(
            float(now), status, gated, tag, tuple(int(v) for v in inputs.frames.shape[1:3])
        )

    # ---- bookkeeping ------------------------------------------------------------------------

    def _can_condition_on(self, enforced: Decision) -> bool:
        """Whether a rollout can be conditioned on what the relay really runs under
        ``enforced``: unmodified commands (PROCEED, or a relay that ignores the gate), or
        SLOW's known scaling (``SessionConfig.slow_action_scale``). STOP never: the robot holds
        still whatever was planned."""
        if not self.config.commands_follow_gate or enforced is Decision.PROCEED:
            return True
        return enforced is Decision.SLOW and self.config.slow_action_scale is not None

    def _as_executed(self, actions: np.ndarray, enforced: Decision) -> tuple[np.ndarray, Decision]:
        """The chunk as the relay will run it if ``enforced`` holds, and the level that chunk
        is right for: SLOW when it was scaled, else PROCEED (the commands as planned; under a
        STOP too, since whatever lets the robot move again will run them unscaled, e.g. the
        first decision after start-up)."""
        if (
            enforced is not Decision.SLOW
            or not self.config.commands_follow_gate
            or self.config.slow_action_scale is None
        ):
            return actions, Decision.PROCEED
        out = np.array(actions, copy=True)
        out[:, list(self.config.slow_action_dims)] *= float(self.config.slow_action_scale)
        return out, Decision.SLOW

    def _remember(self, status: GateStatus) -> GateStatus:
        """Keep the latest status; tell the monitor when its stored rollouts stopped describing
        what the robot does (``SessionConfig.commands_follow_gate``): the enforced decision is
        not the one they were conditioned on, or is one no rollout can be conditioned on."""
        self._last_status = status
        enforced = status.effective_decision
        if self.config.commands_follow_gate and (
            enforced is not self._conditioned_on or not self._can_condition_on(enforced)
        ):
            interrupt = getattr(self.monitor, "interrupt", None)
            if callable(interrupt):
                interrupt()
            self._conditioned_on = enforced
        return status

    def _internal(self, where: str, exc: Exception) -> GateStatus:
        logger.exception("MonitorSession.%s failed; closing the gate", where)
        try:
            with self._state_lock:
                self._counts["internal_errors"] += 1
        except Exception:  # pragma: no cover
            pass
        return self._remember(
            self.gate.report_fault(Reason.internal_error, f"{where}: {type(exc).__name__}: {exc}")
        )

    def _record(self, now: float, status: GateStatus, a: Assessment | None) -> None:
        with self._state_lock:
            if self.config.keep_decisions:
                rec: dict[str, Any] = {
                    "index": len(self._decisions),
                    "now": json_float(now),
                    "stamp": None if a is None else json_float(a.stamp),
                    "risk": None if a is None else json_float(a.risk),
                    "decision": status.decision.name,
                    "effective_decision": status.effective_decision.name,
                    "lock": status.lock,
                    "reasons": [r.value for r in status.reasons],
                    "box": None if a is None or a.box is None else [json_float(v) for v in a.box],
                    "onset_step": None if a is None or a.onset_step is None else int(a.onset_step),
                    "latency_ms": {}
                    if a is None
                    else {str(k): json_float(v) for k, v in sorted(a.latency_ms.items())},
                }
                self._decisions.append(rec)
            self._track_alert(now, status, a)

    def _track_alert(
        self, now: float, status: GateStatus, a: Assessment | None, *, decision: bool = True
    ) -> None:
        """An alert is a maximal period in which the gate is closed (SLOW/STOP) for any cause
        other than start-up (``not_started`` / ``no_*_yet`` only), as seen at decisions and
        watchdog ticks; ``n_decisions`` counts only the decisions inside it."""
        causes = set(status.reasons) - {Reason.ok}
        closed = status.decision is not Decision.PROCEED and not causes <= _BOOT_REASONS
        if not closed:
            self._open_alert = None
            return
        al = self._open_alert
        if al is None:
            al = _Alert(start=float(now), end=float(now), decision=status.decision)
            self._alerts.append(al)
            self._open_alert = al
        al.end = float(now)
        al.n_decisions += int(decision)
        al.decision = max(al.decision, status.decision)
        al.reasons.update(r.value for r in causes)
        if a is not None and a.risk is not None:
            if al.first_assessment_stamp is None:
                al.first_assessment_stamp = float(a.stamp)
            if al.onset_step is None and a.onset_step is not None:
                al.onset_step = int(a.onset_step)
            if al.peak_risk is None or float(a.risk) > al.peak_risk:
                al.peak_risk = float(a.risk)
                if a.box is not None:
                    al.box = tuple(float(v) for v in a.box)  # type: ignore[assignment]

    # ---- reporting --------------------------------------------------------------------------

    def status(self) -> GateStatus:
        """The gate's current status (cheap; never raises)."""
        return self.gate.status()

    def latency(self) -> dict[str, dict[str, float | int | None]]:
        """p50/p95/mean/max per stage over the last ``latency_window`` decisions."""
        with self._state_lock:
            samples = {k: list(v) for k, v in self._latency.items()}
        return latency_stats(samples)

    def _calibration_drift(self) -> dict[str, Any] | None:
        drift = getattr(self.monitor, "calibration_drift", None)
        return drift() if callable(drift) else None

    def diagnostics(self) -> tuple[int, str, list[tuple[str, str]]]:
        """``(level, message, key_values)`` for ``/diagnostics`` (see :func:`diagnostic_status`)."""
        try:
            return diagnostic_status(
                self.gate.status(),
                backend=str(getattr(self.monitor, "backend_name", "")),
                latency=self.latency(),
                accounting=self.accounting.to_dict(),
                calibration=self._calibration_drift(),
            )
        except Exception as exc:  # pragma: no cover - defensive
            return DIAG_ERROR, f"diagnostics failed: {exc}", []

    def summary(self) -> dict[str, Any]:
        """JSON-ready record of the session: decisions, alerts, latency, accounting, status."""
        with self._state_lock:
            decisions = list(self._decisions)
            alerts = [a.to_dict() for a in self._alerts]
            counts = dict(self._counts)
        counts["frames_decimated"] = int(self.buffer.decimated)
        status = self.gate.status()
        return {
            "monitor": {
                "backend": str(getattr(self.monitor, "backend_name", "")),
                "context_length": int(self.monitor.context_length),
                "horizon": int(self.monitor.horizon),
                "action_dim": int(self.monitor.action_dim),
                "image_size": [int(v) for v in self.buffer.image_hw or (0, 0)],
            },
            "gate_config": {
                k: (json_float(v) if isinstance(v, float) else v)
                for k, v in vars(self.gate.config).items()
            },
            "policy": {
                "per_chunk": self.config.per_chunk,
                "decision_rate_hz": self.config.decision_rate_hz,
            },
            "counts": counts,
            "decisions": decisions,
            "alerts": alerts,
            "latency_ms": self.latency(),
            "accounting": self.accounting.to_dict(),
            "accounting_problems": self.accounting.problems(),
            "final_status": status.to_dict(),
        }
