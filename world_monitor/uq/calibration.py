"""Calibration metrics for the C³ confidence maps, streamed so millions of elements fit in RAM.

Why streaming: every latent element of every predicted frame is one sample (method.md §1), so a
held-out evaluation easily has 10⁸ (confidence, label) pairs per ε. All metrics here are
functions of a few histograms, so :class:`CalibrationAccumulator` keeps only those.

Bin conventions
---------------
* Reliability / ECE / MCE: ``n_bins = 20`` equal-width bins on [0, 1]. Bin ``k`` holds
  confidences in ``[k/20, (k+1)/20)``; the last bin is closed, ``[0.95, 1.0]``, so a confidence
  of exactly 1.0 goes into the last bin. Values outside [0, 1] are clipped (with a warning).
* ``ECE = Σ_k (n_k/N)·|acc_k − conf_k|``; ``MCE = max_k |acc_k − conf_k|`` over non-empty bins.
  MCE is a maximum over bins, so one nearly empty bin decides it (measured: 0.087 on one
  regenerated dataset, 0.237 on another, issue 16); it is reported with the element count of the
  bin it comes from (``mce_bin_count``), and ``mce_massive`` is the same maximum over the bins
  that hold at least :data:`MCE_MIN_MASS` of the elements.
* ``Brier = mean (q − y)²``; ``BSS = 1 − Brier / (b(1 − b))`` with ``b`` the base rate, i.e. the
  skill against the constant predictor ``q ≡ b`` (NaN when ``b ∈ {0, 1}``: no reference skill).

Streamed AUROC
--------------
Confidences are histogrammed per label into ``n_auroc_bins`` (1000) equal-width bins; AUROC is
``P(q⁺ > q⁻) + ½·P(q⁺, q⁻ in the same bin)``. Pairs in different bins are ranked exactly, so the
only error comes from pairs sharing a bin, whose true contribution lies anywhere in [0, 1] while
we count ½. Hence ``|AUROC_stream − AUROC_exact| ≤ ½·Σ_k p⁺_k·p⁻_k`` (``p^±_k`` = fraction of
positives / negatives in bin k), reported as ``auroc_error_bound``. For spread-out confidences
this is ~``0.5/n_auroc_bins`` (5e-4 with 1000 bins); it grows when both classes pile into one
bin (e.g. a constant predictor, where the exact AUROC is 0.5 anyway).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

__all__ = [
    "EPS_GRID",
    "N_BINS",
    "CalibrationAccumulator",
    "CalibrationStats",
    "CorrelationResult",
    "bin_index",
    "calibration_error",
    "confidence_error_correlation",
    "per_frame_means",
    "plot_reliability",
]

logger = logging.getLogger(__name__)

N_BINS = 20
EPS_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))


def _as_numpy(x: object) -> np.ndarray:
    """Flatten a numpy array, a torch tensor or a sequence to float64 numpy (no torch import)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[attr-defined]
    return np.asarray(x, dtype=np.float64).reshape(-1)


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Equal-width bin of each confidence; 1.0 goes into the last bin (module docstring)."""
    idx = np.floor(np.asarray(confidence) * n_bins).astype(np.int64)
    return np.clip(idx, 0, n_bins - 1)


def _clip_unit(conf: np.ndarray) -> np.ndarray:
    if conf.size and (conf.min() < 0.0 or conf.max() > 1.0 or np.isnan(conf).any()):
        if np.isnan(conf).any():
            raise ValueError("confidence contains NaN")
        logger.warning(
            "confidence outside [0, 1] (min %.4g, max %.4g); clipping",
            conf.min(),
            conf.max(),
        )
        conf = np.clip(conf, 0.0, 1.0)
    return conf


@dataclass
class CalibrationStats:
    """All metrics for one ε. Bin arrays are per reliability bin (length ``n_bins``)."""

    eps: float
    n: int
    ece: float
    mce: float
    mce_bin_count: int
    mce_massive: float
    brier: float
    base_rate: float
    brier_skill: float
    auroc: float
    auroc_error_bound: float
    bin_counts: list[int]
    bin_confidence: list[float]
    bin_accuracy: list[float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


#: ``mce_massive``: bins holding less than this fraction of the elements are left out.
MCE_MIN_MASS = 0.005


def mce_details(
    counts: np.ndarray, conf_sums: np.ndarray, label_sums: np.ndarray
) -> tuple[int, float]:
    """(elements in the bin that sets MCE, MCE over bins with >= MCE_MIN_MASS of the elements)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return 0, math.nan
    nz = counts > 0
    gap = np.full(counts.shape, -1.0)
    gap[nz] = np.abs(
        np.asarray(label_sums)[nz] / counts[nz] - np.asarray(conf_sums)[nz] / counts[nz]
    )
    heavy = counts >= MCE_MIN_MASS * n
    return int(counts[int(np.argmax(gap))]), float(gap[heavy].max()) if heavy.any() else math.nan


def calibration_error(
    counts: np.ndarray, conf_sums: np.ndarray, label_sums: np.ndarray
) -> tuple[float, float]:
    """(ECE, MCE) from per-bin counts and sums of confidences and labels."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return math.nan, math.nan
    nz = counts > 0
    gap = np.abs(np.asarray(label_sums)[nz] / counts[nz] - np.asarray(conf_sums)[nz] / counts[nz])
    return float((counts[nz] / n * gap).sum()), float(gap.max())


def _auroc_from_hist(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan, math.nan
    p, q = pos / n_pos, neg / n_neg
    neg_below = np.concatenate([[0.0], np.cumsum(q)[:-1]])
    same = p * q
    auroc = float((p * neg_below).sum() + 0.5 * same.sum())
    return auroc, float(0.5 * same.sum())


class _EpsState:
    """Histograms for one ε (float64 sums; int64 counts)."""

    def __init__(self, n_bins: int, n_auroc_bins: int) -> None:
        self.counts = np.zeros(n_bins, dtype=np.int64)
        self.conf_sums = np.zeros(n_bins)
        self.label_sums = np.zeros(n_bins)
        self.sq_err = 0.0
        self.pos_hist = np.zeros(n_auroc_bins, dtype=np.int64)
        self.neg_hist = np.zeros(n_auroc_bins, dtype=np.int64)


class CalibrationAccumulator:
    """Streams (confidence, label) batches per ε into histograms; yields ECE/MCE/Brier/BSS/AUROC.

    ``update(eps, confidence, labels)`` takes arrays or tensors of any (equal) shape, e.g. a whole
    ``[B, H, C, h, w]`` map, where each element is one sample. Labels must be 0/1.
    """

    def __init__(
        self,
        eps_values: Sequence[float] = EPS_GRID,
        n_bins: int = N_BINS,
        n_auroc_bins: int = 1000,
    ) -> None:
        if n_bins < 1 or n_auroc_bins < 1:
            raise ValueError("n_bins and n_auroc_bins must be positive")
        self.n_bins = n_bins
        self.n_auroc_bins = n_auroc_bins
        self._states: dict[float, _EpsState] = {
            self._key(e): _EpsState(n_bins, n_auroc_bins) for e in eps_values
        }

    @staticmethod
    def _key(eps: float) -> float:
        return round(float(eps), 6)

    @property
    def eps_values(self) -> list[float]:
        return list(self._states)

    def update(self, eps: float, confidence: object, labels: object) -> None:
        """Add one batch for tolerance ``eps`` (which must be one of ``eps_values``)."""
        key = self._key(eps)
        if key not in self._states:
            raise KeyError(f"eps={eps} is not tracked; tracked: {self.eps_values}")
        conf = _clip_unit(_as_numpy(confidence))
        lab = _as_numpy(labels)
        if conf.shape != lab.shape:
            raise ValueError(f"confidence has {conf.size} elements but labels {lab.size}")
        if lab.size and not np.isin(lab, (0.0, 1.0)).all():
            raise ValueError("labels must be 0/1")
        st = self._states[key]
        b = bin_index(conf, self.n_bins)
        st.counts += np.bincount(b, minlength=self.n_bins)
        st.conf_sums += np.bincount(b, weights=conf, minlength=self.n_bins)
        st.label_sums += np.bincount(b, weights=lab, minlength=self.n_bins)
        st.sq_err += float(((conf - lab) ** 2).sum())
        a = bin_index(conf, self.n_auroc_bins)
        pos = lab > 0.5
        st.pos_hist += np.bincount(a[pos], minlength=self.n_auroc_bins)
        st.neg_hist += np.bincount(a[~pos], minlength=self.n_auroc_bins)

    def update_from_errors(self, eps: float, confidence: object, abs_error: object) -> None:
        """Update with labels ``1[|x̂ − x*| ≤ ε]`` derived from absolute latent errors."""
        if hasattr(abs_error, "detach"):
            abs_error = abs_error.detach().cpu().numpy()  # type: ignore[attr-defined]
        err = np.asarray(abs_error)
        if not np.issubdtype(err.dtype, np.floating):
            err = err.astype(np.float64)
        # compare in the error's own precision: float32(0.1) > 0.1, so a float64 ε would
        # mislabel errors of exactly ε (the training labels compare in the latent's dtype too)
        self.update(eps, confidence, (err <= err.dtype.type(eps)).astype(np.float64))

    def update_many(
        self, confidences: Mapping[float, object], labels: Mapping[float, object]
    ) -> None:
        """Update several ε at once: ``{eps: confidence}``, ``{eps: labels}``."""
        for eps, conf in confidences.items():
            self.update(eps, conf, labels[eps])

    def stats(self, eps: float) -> CalibrationStats:
        """All metrics for one tracked ε."""
        st = self._states[self._key(eps)]
        n = int(st.counts.sum())
        ece, mce = calibration_error(st.counts, st.conf_sums, st.label_sums)
        mce_count, mce_massive = mce_details(st.counts, st.conf_sums, st.label_sums)
        with np.errstate(invalid="ignore", divide="ignore"):
            bin_conf = np.where(st.counts > 0, st.conf_sums / np.maximum(st.counts, 1), np.nan)
            bin_acc = np.where(st.counts > 0, st.label_sums / np.maximum(st.counts, 1), np.nan)
        brier = st.sq_err / n if n else math.nan
        base = float(st.label_sums.sum() / n) if n else math.nan
        ref = base * (1.0 - base) if n else math.nan
        bss = 1.0 - brier / ref if n and ref > 0 else math.nan
        auroc, bound = _auroc_from_hist(st.pos_hist, st.neg_hist)
        return CalibrationStats(
            eps=self._key(eps),
            n=n,
            ece=ece,
            mce=mce,
            mce_bin_count=mce_count,
            mce_massive=mce_massive,
            brier=brier,
            base_rate=base,
            brier_skill=bss,
            auroc=auroc,
            auroc_error_bound=bound,
            bin_counts=st.counts.tolist(),
            bin_confidence=bin_conf.tolist(),
            bin_accuracy=bin_acc.tolist(),
        )

    def summary(self) -> dict[str, object]:
        """Per-ε metrics and their mean over the ε grid (NaNs skipped), JSON-serialisable."""
        per = {e: self.stats(e) for e in self.eps_values}
        keys = ("ece", "mce", "mce_massive", "brier", "base_rate", "brier_skill", "auroc")
        mean = {}
        for k in keys:
            vals = [getattr(s, k) for s in per.values() if not math.isnan(getattr(s, k))]
            mean[k] = float(np.mean(vals)) if vals else math.nan
        return {
            "n_bins": self.n_bins,
            "n_auroc_bins": self.n_auroc_bins,
            "mean": mean,
            "per_eps": {
                str(e): {
                    k: getattr(s, k) for k in (*keys, "mce_bin_count", "n", "auroc_error_bound")
                }
                for e, s in per.items()
            },
        }


def plot_reliability(
    acc: CalibrationAccumulator,
    path: str | Path,
    eps_values: Iterable[float] | None = None,
    title: str | None = None,
) -> Path:
    """Reliability diagrams (one column per ε) with confidence histograms below; writes a PNG.

    Uses the Agg canvas directly (no pyplot, no global backend switch), so it is safe in
    headless processes and threads.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    eps_list = list(eps_values) if eps_values is not None else acc.eps_values
    if not eps_list:
        raise ValueError("plot_reliability: no ε selected")
    fig = Figure(figsize=(3.0 * len(eps_list), 5.5), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(eps_list), squeeze=False, gridspec_kw={"height_ratios": [3, 1]})
    edges = np.linspace(0.0, 1.0, acc.n_bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    width = 1.0 / acc.n_bins
    for j, eps in enumerate(eps_list):
        s = acc.stats(eps)
        top, bottom = axes[0, j], axes[1, j]
        bin_acc = np.nan_to_num(np.asarray(s.bin_accuracy, dtype=float), nan=0.0)
        top.bar(
            centres,
            bin_acc,
            width=width,
            edgecolor="black",
            color="tab:blue",
            label="accuracy",
        )
        top.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_title(f"ε={s.eps:g}  ECE={s.ece:.3f}  MCE={s.mce:.3f}", fontsize=8)
        top.set_xlabel("confidence")
        if j == 0:
            top.set_ylabel("empirical accuracy")
            top.legend(fontsize=7, loc="upper left")
        bottom.bar(centres, np.asarray(s.bin_counts) / max(s.n, 1), width=width, color="gray")
        bottom.set_xlim(0, 1)
        bottom.set_xlabel("confidence")
        if j == 0:
            bottom.set_ylabel("fraction")
    if title:
        fig.suptitle(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    logger.info("wrote reliability diagram %s", out)
    return out


def per_frame_means(
    confidence: object, abs_error: object, element_dims: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Mean confidence and mean latent L1 error per frame, averaging the last ``element_dims``.

    For maps laid out ``[..., C, h, w]`` (e.g. ``[N, H, C, h, w]``) this gives one
    (confidence, error) pair per predicted frame, the unit used for the rank correlations.
    """

    def _np(x: object) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()  # type: ignore[attr-defined]
        return np.asarray(x, dtype=np.float64)

    c, e = _np(confidence), _np(abs_error)
    if c.shape != e.shape or c.ndim < element_dims:
        raise ValueError(
            f"confidence {c.shape} and error {e.shape} must match with >= {element_dims} dims"
        )
    axes = tuple(range(c.ndim - element_dims, c.ndim))
    return c.mean(axis=axes).reshape(-1), e.mean(axis=axes).reshape(-1)


@dataclass
class CorrelationResult:
    """Rank correlations between confidence and error (negative = informative confidence)."""

    spearman_rho: float
    spearman_p: float
    kendall_tau: float
    kendall_p: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def confidence_error_correlation(
    confidence: object,
    error: object,
    max_samples: int = 100_000,
    seed: int = 0,
) -> CorrelationResult:
    """Spearman ρ and Kendall τ (with p-values) between confidence and latent L1 error.

    Pass per-frame values (mean confidence, mean |x̂ − x*|) or per-element values; more than
    ``max_samples`` pairs are subsampled uniformly without replacement (seeded) because rank
    correlations on 10⁸ pairs are slow and their p-values are already 0 at 10⁵.
    """
    c, e = _as_numpy(confidence), _as_numpy(error)
    if c.shape != e.shape:
        raise ValueError(f"confidence has {c.size} values but error {e.size}")
    if c.size < 3:
        raise ValueError("need at least 3 pairs for a rank correlation")
    if c.size > max_samples:
        idx = np.random.default_rng(seed).choice(c.size, size=max_samples, replace=False)
        c, e = c[idx], e[idx]
    sp = stats.spearmanr(c, e)
    kt = stats.kendalltau(c, e)
    return CorrelationResult(
        spearman_rho=float(sp.statistic),
        spearman_p=float(sp.pvalue),
        kendall_tau=float(kt.statistic),
        kendall_p=float(kt.pvalue),
        n=int(c.size),
    )
