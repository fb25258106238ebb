"""From one rollout's C³ confidence (and an input-side signal) to a calibrated risk in [0, 1].

Why this shape:

* **Raw signals** are cheap summaries of one decision. From the C³ map ``q̂ [H,C,h,w]``:
  ``c3_mean`` = 1 − mean q̂ (overall doubt), ``c3_fraction`` = fraction of latent elements with
  q̂ below ``confidence_level`` (how much of the future the model doubts), ``c3_min_step`` =
  1 − min over steps of the step's mean q̂ (the worst predicted moment). Input side:
  ``recon`` = the VAE reconstruction error of the newest camera frame (appearance shifts show in
  the input; dynamics shifts only in the action-conditioned prediction — see the shared
  measurements, which is why both kinds are available) and ``recon_patch`` = the same error in
  the worst 4x4-pixel cells (a small unseen object is diluted in the frame mean: measured episode
  AUROC on unseen objects 0.95 vs 0.91 for ``recon``); ``recon_z`` = the largest of those
  cell errors in units of the cell's own in-distribution spread (mean and standard deviation per
  cell, stored by calibration): a distractor on the usually empty table is unremarkable in raw
  error but many standard deviations above what that cell normally shows (measured episode AUROC
  on distractors 0.98 alone vs 0.89 for ``recon_patch``). It is computed and reported but not
  fused by default: its in-distribution tail is far heavier than the scale half of the
  calibration split shows (cells that are almost always perfectly reconstructed sometimes are
  not, when the puck passes through them), and fused it put the STOP threshold at a risk of 1.0
  that nothing can exceed (``world-monitor calibrate ... --signals
  c3_fraction,recon,recon_patch,recon_z,motion`` on the shipped bundle).
* **Palette**: ``colour`` = how far outside the in-distribution colour palette the frame's most
  novel pixels are (:mod:`world_monitor.runtime.colour`): a distractor ball or a re-coloured
  gripper is small and reconstructed well by the VAE, but its colour is new.
* **History**: ``motion`` compares how far the scene moved since an earlier decision with how far
  that decision's rollout predicted it would move (:mod:`world_monitor.runtime.motion`): the only
  signal that sees a dynamics shift (measured episode AUROC on dynamics 0.94 alone, 0.34 for the
  fused risk without it). ``selfcheck`` scores the same earlier rollout's C³ confidence against
  the frames that arrived (log-loss excess of the realised accuracy labels, worst latent cells):
  the model checking its own confidence. Both are undefined at an episode's first decisions and
  while the gate has been modifying the commands; an undefined signal ranks 0 (no evidence).
* **Calibration to a common scale.** Each raw signal is mapped through the empirical CDF of the
  same signal on held-out in-distribution decisions (``reference``):
  ``p_s = #{reference ≤ s} / (n + 1)`` (ties within a relative 1e-5 count as equal), with an
  exponential tail fitted above the reference's 90% quantile (thresholds live there). So a risk of 0.99 means
  "higher than 99% of what the model produced on in-distribution data", whatever the signal's
  units. Several signals are fused by the maximum of their ``p_s`` (an alarm from either kind
  of evidence counts). On the ``episode`` scale (``calibrate``'s default since v0.8) the
  reference is instead each in-distribution episode's *maximum* of the signal, so every
  signal's rank means "above what it reached in that share of normal episodes" and one
  signal's rare in-distribution excursions no longer set the threshold for all of them.
* **Thresholds** on that risk (SLOW, STOP) are then chosen by split-conformal calibration on a
  *different* set of in-distribution episodes (see :mod:`world_monitor.runtime.calibrate`), so the
  CDF fit does not leak into the false-alarm guarantee.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "C3_SIGNALS",
    "HISTORY_SIGNALS",
    "INPUT_SIGNALS",
    "SIGNALS",
    "WORLD_MODEL_SIGNALS",
    "RiskCalibration",
    "RiskConfig",
    "RiskError",
    "SCALES",
    "c3_signals",
    "confidence_summaries",
    "episode_maxima",
    "format_risk",
    "patch_score",
    "recon_cells",
    "recon_error",
    "recon_patch_error",
    "recon_zmap",
    "recon_zscore",
    "selfcheck_drift_bound",
]


def format_risk(value: float) -> str:
    """A risk or threshold printed with enough decimals to tell it from 1: thresholds sit in
    the top 0.1% of the in-distribution risk, so a fixed ``.4f`` turns 0.9999996 into "1.0000",
    which reads as a threshold nothing can exceed."""
    gap = 1.0 - float(value)
    digits = 4 if gap <= 0 or gap >= 1e-3 else max(4, math.ceil(-math.log10(gap)) + 1)
    return f"{value:.{digits}f}"


C3_SIGNALS = ("c3_mean", "c3_fraction", "c3_min_step")
INPUT_SIGNALS = ("recon", "recon_patch", "recon_z", "colour")
HISTORY_SIGNALS = ("motion", "selfcheck")
SIGNALS = (*C3_SIGNALS, *INPUT_SIGNALS, *HISTORY_SIGNALS)
#: The signals computed from the world model and its own predictions only (no input-side
#: colour/reconstruction heuristics): ``evaluate``'s ``world_model`` detector fuses these, to
#: show how much of the detection the model's own uncertainty carries (issue 16).
WORLD_MODEL_SIGNALS = (*C3_SIGNALS, *HISTORY_SIGNALS)
#: Floor on a cell's in-distribution standard deviation in ``recon_z`` (cells the VAE always
#: reconstructs perfectly would otherwise turn a 1e-6 error into a huge z-score).
RECON_Z_MIN_STD = 1e-4
#: ``recon_patch``: the reconstruction error is pooled over PATCH x PATCH pixel cells (the VAE's
#: stride) and the TOP_K worst cells are averaged, so a small novel object (a few cells) is not
#: diluted by the whole frame the way the global mean ``recon`` dilutes it.
RECON_PATCH = 4
RECON_TOP_K = 4
#: Above this quantile of a signal's reference scores the rank follows a fitted exponential
#: tail instead of the empirical CDF (see :meth:`RiskCalibration.signal_risk`).
TAIL_QUANTILE = 0.9
CALIBRATION_VERSION = 1
#: Scores within this relative distance of a reference value rank as equal to it. Backends differ
#: by ~1e-6 (ONNX/TensorRT vs torch), and reference scores can tie (identical frames give
#: identical reconstruction errors), so without a tolerance a 1e-8 difference could move the rank
#: across a whole cluster of ties and change a decision between backends.
RANK_RTOL = 1e-5
#: Fewest in-distribution scores a signal's reference may hold (fewer cannot rank a decision).
MIN_REFERENCE = 10
#: What a signal's value is ranked against (:attr:`RiskConfig.scale`).
SCALES = ("decision", "episode")


class RiskError(ValueError):
    """The risk configuration or the calibration data is unusable; the message says which."""


@dataclass(frozen=True)
class RiskConfig:
    """How one decision's risk is computed (stored in the bundle's calibration.json)."""

    #: The C³ tolerance ε at which the confidence map is read.
    epsilon: float = 0.5
    #: A latent element "is doubted" when q̂ < confidence_level (``c3_fraction``, localisation).
    confidence_level: float = 0.5
    #: Signals fused into the risk (any of :data:`SIGNALS`).
    signals: tuple[str, ...] = (
        "c3_fraction",
        "recon",
        "recon_patch",
        "colour",
        "motion",
        "selfcheck",
    )
    #: What each signal is ranked against before the maximum (:data:`SCALES`): ``decision`` =
    #: in-distribution decisions, ``episode`` = in-distribution episodes' maxima of the signal
    #: (:meth:`RiskCalibration.signal_risk`). ``decision`` for calibrations made before it existed.
    scale: str = "decision"

    def __post_init__(self) -> None:
        if not 0 < self.epsilon <= 2:
            raise RiskError(f"risk.epsilon must be in (0, 2], got {self.epsilon}")
        if not 0 < self.confidence_level < 1:
            raise RiskError(f"risk.confidence_level must be in (0, 1), got {self.confidence_level}")
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals:
            raise RiskError(f"risk.signals {list(self.signals)}: choose from {list(SIGNALS)}")
        if self.scale not in SCALES:
            raise RiskError(f"risk.scale {self.scale!r}: choose from {list(SCALES)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "confidence_level": self.confidence_level,
            "signals": list(self.signals),
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskConfig:
        try:
            return cls(
                epsilon=float(data["epsilon"]),
                confidence_level=float(data["confidence_level"]),
                signals=tuple(str(s) for s in data["signals"]),
                scale=str(data.get("scale", "decision")),
            )
        except (KeyError, TypeError) as exc:
            raise RiskError(f"calibration.risk: missing or ill-typed field ({exc})") from exc


def confidence_summaries(confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-cell ``[h, w]``, per-step ``[H]``) summaries of a ``[H, C, h, w]`` confidence map.

    Per cell: channel mean, worst step; per step: mean over the step's elements. Calibration
    stores their in-distribution means and localisation compares against them, so both sides must
    reduce the map the same way: this is the one place that does.
    """
    q = np.asarray(confidence, dtype=np.float64)
    return q.mean(axis=1).min(axis=0), q.reshape(q.shape[0], -1).mean(axis=1)


def world_model_calibration(info: Mapping[str, Any], epsilon: float) -> RiskCalibration | None:
    """The ``world_model`` detector's fusion (max of in-distribution ranks over
    :data:`WORLD_MODEL_SIGNALS`) from the references ``calibrate`` stores in
    ``world_model_reference``; ``None`` for a calibration made before that existed. Constant
    references, and signals defined on fewer than :data:`MIN_REFERENCE` calibration decisions,
    are left out."""
    stored = info.get("world_model_reference")
    if not isinstance(stored, Mapping):
        return None
    reference = {
        k: np.asarray(v, dtype=np.float64)
        for k, v in stored.items()
        if k in WORLD_MODEL_SIGNALS and len(v) >= MIN_REFERENCE
    }
    for name in constant_signals(reference):
        reference.pop(name)
    episodes = info.get("world_model_episode_reference")
    if isinstance(episodes, Mapping):  # the episode scale, as the gate's risk (calibrate)
        episode_ref = {k: np.asarray(episodes.get(k, ()), dtype=np.float64) for k in reference}
        reference = {k: v for k, v in reference.items() if len(episode_ref[k]) >= MIN_REFERENCE}
        for name in constant_signals({k: episode_ref[k] for k in reference}):
            reference.pop(name)
        if not reference:
            return None
        config = RiskConfig(epsilon=epsilon, signals=tuple(reference), scale="episode")
        return RiskCalibration(
            config, reference, episode_reference={k: episode_ref[k] for k in reference}
        )
    if not reference:
        return None
    config = RiskConfig(epsilon=epsilon, signals=tuple(reference))
    return RiskCalibration(config, reference)


def constant_signals(reference: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Signals whose in-distribution reference is one value (within :data:`RANK_RTOL`), with
    why they cannot be used.

    Why: a constant reference cannot rank anything. Every in-distribution decision then ties
    with the whole reference and ranks ``n / (n + 1)`` (0.9949 for 195 decisions, seen with
    ``c3_fraction`` exactly 0 on a mostly static scene), so the fused risk never goes below that
    and SLOW equals STOP. Such a signal must be reported and left out, not ranked.
    """
    out = {}
    for name, ref in reference.items():
        arr = np.asarray(ref, dtype=np.float64)
        if arr.size == 0:
            continue
        lo, hi = float(arr.min()), float(arr.max())
        if hi - lo <= RANK_RTOL * max(abs(lo), abs(hi), 1e-12):
            out[name] = (
                f"constant on the calibration decisions ({arr.size} scores, all {lo:.6g}): "
                "it cannot rank a decision, so it is left out of the risk"
            )
    return out


def c3_signals(confidence: np.ndarray, confidence_level: float) -> dict[str, float]:
    """The C³ raw signals of one rollout's confidence map ``[H, C, h, w]`` (higher = riskier)."""
    q = np.asarray(confidence, dtype=np.float64)
    if q.ndim != 4 or q.size == 0:
        raise RiskError(f"confidence map must be [H, C, h, w], got shape {q.shape}")
    if not np.isfinite(q).all():
        raise RiskError("confidence map contains NaN/Inf")
    step_mean = confidence_summaries(q)[1]
    return {
        "c3_mean": float(1.0 - q.mean()),
        "c3_fraction": float((q < confidence_level).mean()),
        "c3_min_step": float(1.0 - step_mean.min()),
    }


def recon_cells(
    frame: np.ndarray, reconstruction: np.ndarray, patch: int = RECON_PATCH
) -> np.ndarray:
    """Per-cell reconstruction error ``[H / patch, W / patch]`` of the first of ``[N, 3, H, W]``
    (or ``[3, H, W]``) frames in [-1, 1]: squared error averaged over channels and the cell.
    Shared by the ``recon_patch`` signal and the input-side alert box."""
    a = np.asarray(frame, dtype=np.float64)
    b = np.asarray(reconstruction, dtype=np.float64)
    if a.shape != b.shape:
        raise RiskError(f"reconstruction shape {b.shape} != frame shape {a.shape}")
    err = ((a - b) ** 2).reshape(-1, *a.shape[-3:])[0].mean(axis=0)  # [H, W]
    h, w = err.shape
    if h % patch or w % patch:
        raise RiskError(f"frame {h}x{w} is not a multiple of the patch size {patch}")
    return err.reshape(h // patch, patch, w // patch, patch).mean(axis=(1, 3))


def recon_patch_error(
    frame: np.ndarray,
    reconstruction: np.ndarray,
    patch: int = RECON_PATCH,
    top_k: int = RECON_TOP_K,
) -> float:
    """Mean of the ``top_k`` largest :func:`recon_cells` (the ``recon_patch`` signal)."""
    return patch_score(recon_cells(frame, reconstruction, patch), top_k)


def patch_score(cells: np.ndarray, top_k: int = RECON_TOP_K) -> float:
    """Mean of the ``top_k`` largest values of a cell-error map."""
    flat = np.asarray(cells, dtype=np.float64).ravel()
    k = min(top_k, flat.size)
    return float(np.partition(flat, flat.size - k)[-k:].mean())


def recon_zmap(cells: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-cell error in in-distribution standard deviations of that cell (``mean``/``std`` of
    :func:`recon_cells` over calibration frames)."""
    c = np.asarray(cells, dtype=np.float64)
    mu = np.asarray(mean, dtype=np.float64)
    sd = np.maximum(np.asarray(std, dtype=np.float64), RECON_Z_MIN_STD)
    if c.shape != mu.shape or c.shape != sd.shape:
        raise RiskError(f"recon cell statistics {mu.shape} do not match the cell map {c.shape}")
    return (c - mu) / sd


def recon_zscore(cells: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """The ``recon_z`` signal: the largest value of :func:`recon_zmap`."""
    return float(recon_zmap(cells, mean, std).max())


def recon_error(frame: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean squared error between a frame and its VAE reconstruction, both in [-1, 1]."""
    a = np.asarray(frame, dtype=np.float64)
    b = np.asarray(reconstruction, dtype=np.float64)
    if a.shape != b.shape:
        raise RiskError(f"reconstruction shape {b.shape} != frame shape {a.shape}")
    return float(np.mean((a - b) ** 2))


@dataclass
class RiskCalibration:
    """Per-signal in-distribution reference scores and the SLOW/STOP thresholds on the risk."""

    config: RiskConfig
    #: signal -> sorted in-distribution scores (the empirical CDF's support).
    reference: dict[str, np.ndarray]
    slow_threshold: float = 1.0
    stop_threshold: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    #: signal -> sorted per-episode maxima of the signal on in-distribution episodes (the
    #: ``episode`` scale; empty for the ``decision`` scale)
    episode_reference: dict[str, np.ndarray] = field(default_factory=dict)
    #: (scale, signal) -> (u, ECDF at u, mean exceedance) of its tail, derived lazily
    _tails: dict[tuple[str, str], tuple[float, float, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.reference = _checked_references(self.reference, self.config.signals, "reference")
        if self.config.scale == "episode":
            self.episode_reference = _checked_references(
                self.episode_reference, self.config.signals, "episode_reference"
            )
        if not 0.0 <= self.slow_threshold <= self.stop_threshold <= 1.0:
            raise RiskError(
                f"calibration thresholds must satisfy 0 <= slow ({self.slow_threshold}) <= "
                f"stop ({self.stop_threshold}) <= 1"
            )

    def signal_risk(self, scores: Mapping[str, float]) -> dict[str, float]:
        """Each configured signal's in-distribution rank in [0, 1).

        On the ``episode`` scale the rank is among in-distribution **episodes' maxima** of the
        signal, so 0.99 reads "higher than this signal ever got in 99% of normal episodes".
        Why: the gate's guarantee is per episode, and on the ``decision`` scale the signal with
        the heaviest per-episode tail set the fused STOP threshold for every signal — measured
        on the shipped bundle, one ``motion`` and one ``c3_fraction`` outlier among 100
        calibration episodes put STOP at a decision rank of 1 − 8e-6, so a signal with a light
        tail (``colour``, ``selfcheck`` on a lens smudge) could be far above anything normal and
        still never reach it.

        A history signal (:data:`HISTORY_SIGNALS`) missing from ``scores`` is undefined at this
        decision and ranks 0; any other missing signal is an error.

        Body: the empirical CDF ``#{ref <= s} / (n + 1)``. Tail (above the reference's
        :data:`TAIL_QUANTILE` quantile ``u``): an exponential fitted to the exceedances over
        ``u`` (peaks-over-threshold with a GPD of shape 0),
        ``p_u + (1 - p_u) * (1 - exp(-(s - u) / beta))``, ``beta`` = mean exceedance.

        Why: the SLOW/STOP thresholds live in the top fraction of a percent, where an ECDF of
        ~10^3 scores is a staircase: measured on the shipped bundle, most calibration episodes'
        maxima and most unseen-object decisions sat on the *same* step (1299/1301), so "risk
        above the threshold" collapsed into "above the largest reference score" and the gate
        could not separate them. The fitted tail is continuous and keeps ranking scores beyond
        the largest reference score. It is monotone, so the split-conformal thresholds fitted on
        it (on other episodes) keep their guarantee.
        """
        out = {}
        for name in self.config.signals:
            if name not in scores and name in HISTORY_SIGNALS:
                out[name] = 0.0
                continue
            if name not in scores:
                raise RiskError(f"signal {name!r} missing from the decision's scores")
            scale = self.config.scale
            ref = self.episode_reference[name] if scale == "episode" else self.reference[name]
            value = float(scores[name])
            if not np.isfinite(value):
                raise RiskError(f"signal {name!r} is not finite ({value})")
            tol = RANK_RTOL * max(abs(value), 1e-12)
            rank = int(np.searchsorted(ref, value + tol, side="right"))
            u, p_u, beta = self._tail(scale, name, ref)
            if beta > 0 and value > u:
                # a score within the tie tolerance of a reference score takes that score's
                # value, so backends that differ by ~1e-6 (or identical frames) rank equally
                if rank and ref[rank - 1] > u and value - ref[rank - 1] <= tol:
                    value = float(ref[rank - 1])
                out[name] = p_u + (1.0 - p_u) * float(-np.expm1(-(value - u) / beta))
                continue
            out[name] = float(rank / (len(ref) + 1))
        return out

    def _tail(self, scale: str, name: str, ref: np.ndarray) -> tuple[float, float, float]:
        """(u, ECDF at u, mean exceedance over u) of a signal's reference (cached)."""
        cache = self._tails
        if (scale, name) not in cache:
            u = float(np.quantile(ref, TAIL_QUANTILE))
            p_u = float(np.searchsorted(ref, u, side="right") / (len(ref) + 1))
            exceed = ref[ref > u] - u
            cache[scale, name] = (u, p_u, float(exceed.mean()) if exceed.size else 0.0)
        return cache[scale, name]

    def risk(self, scores: Mapping[str, float]) -> float:
        """The fused risk: the largest per-signal CDF value."""
        return max(self.signal_risk(scores).values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CALIBRATION_VERSION,
            "risk": self.config.to_dict(),
            "reference": {k: [float(x) for x in self.reference[k]] for k in self.config.signals},
            **(
                {
                    "episode_reference": {
                        k: [float(x) for x in self.episode_reference[k]]
                        for k in self.config.signals
                    }
                }
                if self.config.scale == "episode"
                else {}
            ),
            "thresholds": {"slow": self.slow_threshold, "stop": self.stop_threshold},
            **self.info,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskCalibration:
        if not isinstance(data, Mapping):
            raise RiskError("calibration.json: expected a JSON object")
        if data.get("version") != CALIBRATION_VERSION:
            raise RiskError(
                f"calibration.json: version {data.get('version')!r} is not supported "
                f"(expected {CALIBRATION_VERSION}); re-run `world-monitor calibrate`"
            )
        try:
            config = RiskConfig.from_dict(data["risk"])
            reference = {k: np.asarray(v, dtype=np.float64) for k, v in data["reference"].items()}
            episode_reference = {
                k: np.asarray(v, dtype=np.float64)
                for k, v in dict(data.get("episode_reference") or {}).items()
            }
            thresholds = data["thresholds"]
            slow, stop = float(thresholds["slow"]), float(thresholds["stop"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RiskError(f"calibration.json: missing or ill-typed field ({exc})") from exc
        skip = ("version", "risk", "reference", "episode_reference", "thresholds")
        info = {k: v for k, v in data.items() if k not in skip}
        return cls(config, reference, slow, stop, info, episode_reference)

    @classmethod
    def fit_reference(
        cls, config: RiskConfig, decisions: Sequence[Mapping[str, float]]
    ) -> RiskCalibration:
        """Reference distributions from in-distribution decisions' raw scores (thresholds at 1).

        A history signal's reference holds the decisions where it was defined."""
        required = [n for n in config.signals if n not in HISTORY_SIGNALS]
        for d in decisions:
            absent = [n for n in required if n not in d]
            if absent:
                raise RiskError(f"decision scores lack signal(s) {absent}")
        reference = {
            name: np.asarray([d[name] for d in decisions if name in d], dtype=np.float64)
            for name in config.signals
        }
        if config.scale == "episode":
            raise RiskError("the episode scale needs episodes: use fit_episode_reference")
        return cls(config, reference)

    @classmethod
    def fit_episode_reference(
        cls, config: RiskConfig, episodes: Sequence[Sequence[Mapping[str, float]]]
    ) -> RiskCalibration:
        """Both references from in-distribution episodes (each a list of decisions' raw scores):
        every decision for the ``decision`` reference, each episode's maximum per signal for the
        ``episode`` one (a history signal: over the decisions where it was defined; episodes
        where it never was leave no maximum)."""
        decisions = [d for ep in episodes for d in ep]
        flat = cls.fit_reference(dataclasses.replace(config, scale="decision"), decisions)
        return cls(
            config, flat.reference, episode_reference=episode_maxima(episodes, config.signals)
        )


def episode_maxima(
    episodes: Sequence[Sequence[Mapping[str, float]]], signals: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per signal, the sorted maxima over each episode's decisions where the signal is defined
    (an episode where a history signal never was leaves no maximum): the ``episode`` scale's
    reference, for the gate's risk and for the ``world_model`` detector alike."""
    return {
        name: np.sort(
            np.asarray(
                [
                    max(d[name] for d in ep if name in d)
                    for ep in episodes
                    if any(name in d for d in ep)
                ],
                dtype=np.float64,
            )
        )
        for name in signals
    }


def selfcheck_drift_bound(info: Mapping[str, Any]) -> float | None:
    """The ``calibration_drift`` bound: the largest ``selfcheck`` value calibration saw
    (``world_model_reference``), or ``None`` for a calibration with fewer than
    :data:`MIN_REFERENCE` of them. One rule for the node's diagnostic and ``evaluate``'s counts."""
    ref = (info.get("world_model_reference") or {}).get("selfcheck") or []
    return float(max(ref)) if len(ref) >= MIN_REFERENCE else None


def _checked_references(
    refs: Mapping[str, Any], signals: Sequence[str], what: str
) -> dict[str, np.ndarray]:
    """Sorted, finite references of at least :data:`MIN_REFERENCE` values for every signal."""
    out = dict(refs)
    for name in signals:
        ref = refs.get(name)
        if ref is None or len(ref) < MIN_REFERENCE:
            raise RiskError(
                f"calibration.{what}[{name!r}]: need >= {MIN_REFERENCE} in-distribution "
                f"scores, got {0 if ref is None else len(ref)}"
            )
        arr = np.sort(np.asarray(ref, dtype=np.float64))
        if not np.isfinite(arr).all():
            raise RiskError(f"calibration.{what}[{name!r}] contains NaN/Inf")
        out[name] = arr
    return out
