"""Runtime contracts shared by the gate, the Monitor, the ROS node, offline replay and evaluation.

Why a separate module: the gate's vocabulary (decisions and machine-readable reasons) and the
``Assessment`` record are the one thing every consumer of the monitor has to agree on, and none
of them may drag in torch or rclpy. Everything here is plain Python + numpy.

* :class:`Decision` is ordered by restrictiveness (``PROCEED < SLOW < STOP``) so that "the most
  aggressive rule wins" (nav2 collision_monitor) is simply ``max``.
* :class:`Reason` values are stable strings: they go into ``/diagnostics`` key values, replay
  summaries and evaluation tables, so renaming one is a breaking change.
* :class:`Assessment` is one monitor decision (architecture.md, "Assessment"); ``to_dict`` turns
  it into strict JSON (no NaN/Inf, large arrays summarised).
* :class:`GateStatus` is what the gate says right now, with *all* active causes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "Assessment",
    "Decision",
    "GateStatus",
    "Reason",
    "json_float",
    "most_restrictive",
    "summarise_array",
]


class Decision(enum.IntEnum):
    """What the gate lets through, ordered by restrictiveness (higher = more restrictive).

    ``IntEnum`` so that comparisons and ``max`` express "more restrictive" directly; the integer
    values are part of the contract (``PROCEED=0, SLOW=1, STOP=2``).
    """

    PROCEED = 0
    SLOW = 1
    STOP = 2

    @property
    def lock(self) -> bool:
        """twist_mux lock semantics: ``True`` engages the lock (stop the policy)."""
        return self is Decision.STOP


def most_restrictive(*decisions: Decision) -> Decision:
    """The most restrictive of ``decisions`` (the most aggressive rule wins).

    Raises ``ValueError`` when called with nothing: "no decision" must never be mistaken for
    PROCEED by accident, so the caller has to say what the empty case means.
    """
    if not decisions:
        raise ValueError("most_restrictive() needs at least one decision")
    return Decision(max(Decision(d) for d in decisions))


class Reason(str, enum.Enum):
    """Machine-readable cause of the gate's current decision (stable string values)."""

    # model-driven
    ok = "ok"  # gate open, nothing wrong
    risk_high = "risk_high"  # risk >= stop threshold
    risk_elevated = "risk_elevated"  # slow threshold <= risk < stop threshold
    hysteresis_hold = "hysteresis_hold"  # risk dropped, but not yet for N consecutive decisions
    # staleness / watchdog (caller-supplied clock)
    not_started = "not_started"  # no good assessment since boot: fail closed at start-up
    no_image_yet = "no_image_yet"
    no_actions_yet = "no_actions_yet"
    stale_image = "stale_image"
    stale_actions = "stale_actions"
    future_stamp = "future_stamp"  # an input stamp is ahead of the gate clock (clock mismatch)
    clock_jump = "clock_jump"  # the caller's clock went backwards (sim reset, bag loop)
    backend_timeout = "backend_timeout"  # no successful assessment within decision_timeout_s
    # bad input
    out_of_order_stamp = "out_of_order_stamp"
    invalid_stamp = "invalid_stamp"  # not a real number
    invalid_image = "invalid_image"  # wrong dtype / shape / channels / size / encoding
    invalid_actions = "invalid_actions"  # wrong dtype / dims
    non_finite_input = "non_finite_input"  # NaN / Inf in actions or stamps
    #: a finite action outside the bundle's training range (+ its declared margin): the model
    #: never saw such a command, so its confidence there means nothing (it saturated at 1.0)
    action_out_of_range = "action_out_of_range"
    #: the context frames are not spaced like the bundle's frame period (a gap, a dropped
    #: frame, a slower camera): the model would be reading a motion it was never shown. A
    #: faster camera is subsampled instead (frames too soon are skipped, counted superseded)
    context_gap = "context_gap"
    # backend / internal
    backend_error = "backend_error"  # the model backend raised
    invalid_assessment = "invalid_assessment"  # the Monitor produced a malformed assessment
    internal_error = "internal_error"  # a bug in the gate or buffer itself
    # configuration
    monitor_disabled = "monitor_disabled"  # enabled=False: commands pass, nothing is gated

    def __str__(self) -> str:  # so f-strings and logs show "stale_image", not "Reason.stale_image"
        return self.value


def json_float(x: float | None) -> float | None:
    """A float that strict JSON accepts: NaN/Inf become ``None`` (documented in ``to_dict``)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def summarise_array(a: np.ndarray) -> dict[str, Any]:
    """JSON summary of a (possibly large) array: shape, dtype and finite min/mean/max.

    ``n_nonfinite`` is reported explicitly so a NaN in a heatmap is visible in the summary
    instead of silently poisoning the mean.
    """
    arr = np.asarray(a)
    out: dict[str, Any] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    if arr.size and np.issubdtype(arr.dtype, np.number):
        finite = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr.ravel()
        out["n_nonfinite"] = int(arr.size - finite.size)
        if finite.size:
            out["min"] = float(finite.min())
            out["mean"] = float(finite.mean(dtype=np.float64))
            out["max"] = float(finite.max())
    return out


@dataclass
class Assessment:
    """One monitor decision (architecture.md, "Assessment").

    The Monitor fills the model fields; the gate fills ``decision`` and ``reasons`` (see
    :meth:`with_gate`). ``decision`` defaults to ``STOP``: an assessment that was never gated must
    not read as permission.

    Attributes:
        stamp: seconds, the stamp of the newest input frame the assessment is about.
        risk: calibrated risk in [0, 1]; ``None`` when not assessed (non-model cause).
        decision: the gate's decision for this assessment.
        step_confidence: float [H], confidence per predicted step (1 = confident).
        confidence_map: float [H, C, h, w], C³ confidence at ``epsilon``.
        epsilon: the ε the map was computed at.
        box: (x0, y0, x1, y1) in [0, 1] image coordinates of the least-confident region.
        onset_step: first predicted step (0-based) where confidence drops.
        aleatoric, epistemic, outcome: optional scalar summaries (outcome = failure probability).
        latency_ms: milliseconds per stage, e.g. ``{"encode": 3.1, "rollout": 40.2}``.
        backend: which backend produced it (``"torch"``, ``"onnxruntime"``, ...).
        reasons: why the gate is closed (or ``ok``); non-model causes when ``risk`` is None.
        detail: human-readable explanation accompanying ``reasons``.
        signals: raw (uncalibrated) risk signals by name.
    """

    stamp: float
    risk: float | None = None
    decision: Decision = Decision.STOP
    step_confidence: np.ndarray | None = None
    confidence_map: np.ndarray | None = None
    epsilon: float | None = None
    box: tuple[float, float, float, float] | None = None
    onset_step: int | None = None
    aleatoric: float | None = None
    epistemic: float | None = None
    outcome: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    backend: str = ""
    reasons: tuple[Reason, ...] = ()
    detail: str = ""
    #: Raw risk signals of this decision (risk.SIGNALS: C³ summaries, input reconstruction
    #: error) before calibration; evaluation compares them as detectors.
    signals: dict[str, float] = field(default_factory=dict)
    #: Predicted latents [H, C, h, w] the confidence map is about (``None`` from monitors that
    #: do not expose them). Kept for visualisation (decoded "predicted" strips); not serialised.
    predicted_latents: np.ndarray | None = None

    def with_gate(self, status: GateStatus) -> Assessment:
        """A copy carrying the gate's decision and reasons, for publishing/logging.

        Uses the *computed* ``status.decision`` (not ``effective_decision``): in shadow mode the
        record must show what the monitor would have done. The relay/lock enforce
        ``status.effective_decision``.
        """
        return replace(
            self,
            decision=status.decision,
            reasons=tuple(status.reasons),
            detail="; ".join(f"{k}: {v}" for k, v in status.details.items()) or self.detail,
        )

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-serialisable view (``json.dumps(..., allow_nan=False)`` works).

        Conventions: enums become their names/values (``decision`` → ``"STOP"``, ``reasons`` →
        ``["stale_image"]``); non-finite floats become ``None``; ``step_confidence`` (length H,
        small) is listed in full; ``confidence_map`` (H·C·h·w, large) is summarised by
        :func:`summarise_array` (shape, dtype, min/mean/max, n_nonfinite), never listed.
        """
        sc = None
        if self.step_confidence is not None:
            sc = [json_float(v) for v in np.asarray(self.step_confidence, dtype=np.float64).ravel()]
        return {
            "stamp": json_float(self.stamp),
            "risk": json_float(self.risk),
            "decision": Decision(self.decision).name,
            "step_confidence": sc,
            "confidence_map": (
                None if self.confidence_map is None else summarise_array(self.confidence_map)
            ),
            "epsilon": json_float(self.epsilon),
            "box": None if self.box is None else [json_float(v) for v in self.box],
            "onset_step": None if self.onset_step is None else int(self.onset_step),
            "aleatoric": json_float(self.aleatoric),
            "epistemic": json_float(self.epistemic),
            "outcome": json_float(self.outcome),
            "latency_ms": {str(k): json_float(v) for k, v in self.latency_ms.items()},
            "backend": str(self.backend),
            "reasons": [Reason(r).value for r in self.reasons],
            "detail": str(self.detail),
            "signals": {str(k): json_float(v) for k, v in self.signals.items()},
        }


@dataclass(frozen=True)
class GateStatus:
    """What the gate says now.

    Attributes:
        decision: the decision the monitor computed (most restrictive active cause wins).
        effective_decision: what the relay / lock must enforce: equals ``decision`` normally,
            ``PROCEED`` in shadow (report-only) mode and when disabled.
        reasons: *all* active causes, most restrictive first; ``(ok,)`` when open and healthy.
        details: per-reason human-readable detail (keys are reason values).
        since: caller-clock time at which ``decision`` last changed (None before any event).
        risk: risk of the last accepted assessment (None if none yet).
        shadow: shadow mode (decision computed and reported, never enforced).
        enabled: ``False`` means the monitor is switched off (reason ``monitor_disabled``).
        counters: monotonically increasing event counts (flat, JSON-friendly keys).
    """

    decision: Decision
    effective_decision: Decision
    reasons: tuple[Reason, ...]
    details: Mapping[str, str] = field(default_factory=dict)
    since: float | None = None
    risk: float | None = None
    shadow: bool = False
    enabled: bool = True
    counters: Mapping[str, int] = field(default_factory=dict)

    @property
    def lock(self) -> bool:
        """twist_mux lock value to publish: ``True`` = stop the policy."""
        return self.effective_decision is Decision.STOP

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-serialisable view (enums as names/values, non-finite floats as None)."""
        return {
            "decision": self.decision.name,
            "effective_decision": self.effective_decision.name,
            "lock": self.lock,
            "reasons": [r.value for r in self.reasons],
            "details": dict(self.details),
            "since": json_float(self.since),
            "risk": json_float(self.risk),
            "shadow": self.shadow,
            "enabled": self.enabled,
            "counters": dict(self.counters),
        }
