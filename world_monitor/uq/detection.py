"""Detection metrics and split-conformal alarm thresholds for episode / decision risk scores.

Why: the C³ paper publishes no decision rule (method.md §1, "ours"). We raise an alarm when a
risk score exceeds a threshold calibrated on held-out *in-distribution* rollouts, so that the
false-alarm rate on fresh in-distribution data is at most a target α with a finite-sample
guarantee, and we report AUROC / TPR at that false-alarm rate against shifts.

Conventions: higher score = more risk; label 1 = positive (failure / shift), 0 = nominal; an
alarm fires when ``score > threshold`` (strict).

Split-conformal threshold: with n calibration scores and ``k = ⌈(n + 1)(1 − α)⌉``, the threshold
is the k-th smallest score (the ``k/n`` empirical quantile, ``np.quantile(method="inverted_cdf")``;
method.md's ``⌈(n+1)(1−α)⌉/n`` quantile). For exchangeable scores,
``P(score_new > threshold) ≤ 1 − k/(n + 1) ≤ α`` (equal to it for continuous scores), and the
rate is at least ``α − 1/(n + 1)``. If ``k > n`` (too few calibration scores for α) no finite
threshold gives the guarantee: the threshold is +inf (never alarm) and a warning is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "ConformalThreshold",
    "RocCurve",
    "auroc",
    "bootstrap_ci",
    "conformal_threshold",
    "episode_conformal_threshold",
    "false_alarm_rate",
    "first_alarm_step",
    "lead_time",
    "roc",
    "tpr_at_fpr",
    "wilson_interval",
]

logger = logging.getLogger(__name__)


def _scores_labels(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (nominal) or 1 (positive)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s, y


def auroc(scores: object, labels: object) -> float:
    """Exact AUROC (sklearn); NaN (with a warning) if only one class is present."""
    s, y = _scores_labels(scores, labels)
    if y.min() == y.max():
        logger.warning("auroc: only one class present; returning NaN")
        return math.nan
    return float(roc_auc_score(y, s))


@dataclass
class RocCurve:
    """False- and true-positive rates at each distinct threshold (sklearn ``roc_curve``)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auroc: float


def roc(scores: object, labels: object) -> RocCurve:
    """ROC curve plus AUROC."""
    s, y = _scores_labels(scores, labels)
    fpr, tpr, thr = roc_curve(y, s)
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thr, auroc=auroc(s, y))


def tpr_at_fpr(scores: object, labels: object, target_fpr: float = 0.05) -> float:
    """Highest TPR reachable with an empirical false-positive rate ≤ ``target_fpr``."""
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    curve = roc(scores, labels)
    ok = curve.fpr <= target_fpr + 1e-12
    return float(curve.tpr[ok].max()) if ok.any() else 0.0


def false_alarm_rate(scores: object, threshold: float) -> float:
    """Fraction of (nominal) scores that would raise an alarm (``score > threshold``)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("false_alarm_rate: no scores")
    return float((s > threshold).mean())


@dataclass
class ConformalThreshold:
    """A split-conformal threshold and what it guarantees.

    ``bound`` = ``1 − k/(n+1)``: the guaranteed (marginal) false-alarm rate on a fresh
    exchangeable score; ``achieved`` = empirical rate on the calibration scores themselves.
    """

    threshold: float
    alpha: float
    n: int
    k: int
    bound: float
    achieved: float

    def to_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        d["threshold"] = self.threshold if math.isfinite(self.threshold) else "inf"
        return d


def conformal_threshold(calibration_scores: object, alpha: float) -> ConformalThreshold:
    """Split-conformal alarm threshold for target false-alarm rate ``alpha`` (module docstring)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s = np.sort(np.asarray(calibration_scores, dtype=np.float64).reshape(-1))
    n = s.size
    if n == 0:
        raise ValueError("conformal_threshold: no calibration scores")
    if np.isnan(s).any():
        raise ValueError("conformal_threshold: calibration scores contain NaN")
    k = math.ceil((n + 1) * (1.0 - alpha) - 1e-12)
    if k > n:
        logger.warning(
            "conformal_threshold: n=%d scores cannot certify alpha=%.4g (need n >= %d); threshold=inf",
            n,
            alpha,
            math.ceil(1.0 / alpha - 1.0),
        )
        thr = math.inf
    else:
        thr = float(s[k - 1])
    return ConformalThreshold(
        threshold=thr,
        alpha=alpha,
        n=n,
        k=k,
        bound=max(0.0, 1.0 - k / (n + 1)),
        achieved=float((s > thr).mean()),
    )


def episode_conformal_threshold(
    episode_risks: Sequence[object], alpha: float
) -> ConformalThreshold:
    """Conformal threshold on each nominal episode's **maximum** risk.

    An episode raises a (false) alarm iff its maximum risk exceeds the threshold, so calibrating
    on per-episode maxima bounds the per-episode false-alarm rate (the one operators feel), not
    the per-decision rate — decisions within one episode are not exchangeable anyway.
    """
    maxima = []
    for i, r in enumerate(episode_risks):
        arr = np.asarray(r, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            raise ValueError(f"episode_conformal_threshold: episode {i} has no risk values")
        maxima.append(arr.max())
    return conformal_threshold(np.asarray(maxima), alpha)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (e.g. a false-alarm or detection rate)."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must be in [0, n={n}]")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(ci.low), float(ci.high)


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: object,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    stratify: object | None = None,
) -> tuple[float, float, float]:
    """Percentile bootstrap ``(point, low, high)`` of ``statistic(*arrays)`` over paired rows.

    Hand-rolled rather than ``scipy.stats.bootstrap`` because detection metrics need
    **stratified** resampling (resample positives and negatives separately, pass the labels as
    ``stratify``): an unstratified resample of a small set can miss a class and AUROC is then
    undefined.
    """
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("bootstrap_ci: arrays differ in length")
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if stratify is None
        else [np.flatnonzero(np.asarray(stratify) == g) for g in np.unique(stratify)]
    )
    point = float(statistic(*arrs))
    vals = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        vals[b] = statistic(*(a[idx] for a in arrs))
    lo, hi = np.nanquantile(vals, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return point, float(lo), float(hi)


def first_alarm_step(risks: object, threshold: float) -> int | None:
    """Index of the first decision whose risk exceeds ``threshold`` (None if it never does)."""
    r = np.asarray(risks, dtype=np.float64).reshape(-1)
    hits = np.flatnonzero(r > threshold)
    return int(hits[0]) if hits.size else None


def lead_time(
    stop_step: int | None, failure_step: int | None, fps: float | None = None
) -> float | None:
    """``failure_step − stop_step`` (steps, or seconds when ``fps`` is given).

    Positive = the monitor stopped before the failure (useful warning); ≤ 0 = too late; None when
    either is missing (no alarm, or no failure).
    """
    if stop_step is None or failure_step is None:
        return None
    steps = float(failure_step - stop_step)
    return steps / fps if fps else steps
