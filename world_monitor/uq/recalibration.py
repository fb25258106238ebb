"""Post-hoc recalibration of the C³ confidence on held-out in-distribution rollouts.

Why: the probe is trained on the one-step v-prediction label ``1[|v̂ − v*| ≤ ε]`` (the paper's
choice: it discriminates far better than the DDIM-rescaled label, see config/train/default.yaml),
but at inference the question is the rolled-out x0 error ``|x̂ − x*| ≤ ε``. The two differ, so the
raw probe is systematically under-confident at small ε (measured on the shipped bundle's
in-distribution test windows: ECE 0.119 at ε = 0.1, 0.029 averaged over the grid).
Discrimination cannot be recovered after training; calibration can, on data the model never
trained on. So for every ε of the probe's grid we fit a monotone map ``g_ε(q̂) ≈ P(acc | q̂)``
on rollouts of the calibration split, with the real future as the label.

The map is **beta calibration** (Kull, Silva Filho, Flach 2017):
``g(q) = σ(a·ln q − b·ln(1 − q) + c)`` with ``a, b ≥ 0`` (so it is monotone and keeps every
ranking: AUROC is unchanged). Why not isotonic regression: most elements sit near q̂ = 1 (mean
confidence 0.92), so the low-confidence region holds few calibration samples, and a step function fitted
there moves whole sparse bins. Measured by ``python benchmarks/recalibration.py`` on the shipped
bundle (128 calibration windows, 64 test windows, 20 bins, averaged over ε; ECE / MCE): raw
0.029 / 0.278, isotonic 0.002 / 0.187, Platt scaling 0.002 / 0.309, beta 0.002 / 0.112.

Between two grid ε the outputs of the two neighbouring maps are interpolated linearly; outside
the grid the nearest map is used. Stored as three numbers per ε, validated on load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ConfidenceRecalibration", "RecalibrationError", "correctness_samples"]

#: Elements used per ε for a fit (a random subset when more are given).
MAX_FIT_SAMPLES = 400_000
#: q̂ is clipped into [CLIP, 1 − CLIP] before the logs (the probe's sigmoid can round to 0 or 1).
CLIP = 1e-6
FORMAT_VERSION = 2


class RecalibrationError(ValueError):
    """A stored recalibration is malformed, or a fit is impossible; the message says which."""


def _features(q: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(q, dtype=np.float64), CLIP, 1.0 - CLIP)
    return np.stack([np.log(c), -np.log1p(-c)], axis=-1)


@dataclass(frozen=True)
class ConfidenceRecalibration:
    """Per-ε beta-calibration maps ``q̂ -> P(|x̂ − x*| ≤ ε | q̂)`` (module docstring)."""

    eps_grid: tuple[float, ...]
    #: ``[len(eps_grid), 3]``: ``(a, b, c)`` per ε, ``a, b >= 0``.
    params: np.ndarray
    #: what it was fitted on (split, windows, elements per ε): provenance for the bundle.
    info: Mapping[str, Any]

    def __post_init__(self) -> None:
        grid = np.asarray(self.eps_grid, dtype=np.float64)
        par = np.asarray(self.params, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.diff(grid) > 0):
            raise RecalibrationError(f"eps_grid must be increasing and non-empty, got {grid}")
        if par.shape != (grid.size, 3):
            raise RecalibrationError(f"params must be [{grid.size}, 3], got {list(par.shape)}")
        if not np.isfinite(par).all():
            raise RecalibrationError("params must be finite")
        if np.any(par[:, :2] < 0):
            raise RecalibrationError("a and b must be >= 0 (a monotone, non-decreasing map)")

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        samples: Mapping[float, tuple[np.ndarray, np.ndarray]],
        *,
        seed: int = 0,
        info: Mapping[str, Any] | None = None,
    ) -> ConfidenceRecalibration:
        """Fit one map per ε from ``{ε: (confidence, correct)}`` element samples (maximum
        likelihood logistic regression on ``(ln q, −ln(1 − q))``; a negative slope, which
        would reverse the ranking, is refitted with that feature dropped)."""
        from sklearn.linear_model import LogisticRegression

        if not samples:
            raise RecalibrationError("no samples to fit a recalibration on")
        rng = np.random.default_rng(seed)
        grid = sorted(float(e) for e in samples)
        rows, counts = [], {}
        for eps in grid:
            q, acc = (np.asarray(a).ravel() for a in samples[eps])
            if q.size != acc.size or q.size < 100:
                raise RecalibrationError(
                    f"eps {eps}: need >= 100 paired (confidence, label) samples, got "
                    f"{q.size} / {acc.size}"
                )
            acc = acc.astype(bool)
            if acc.all() or not acc.any():
                raise RecalibrationError(f"eps {eps}: the labels are all {bool(acc[0])}")
            if q.size > MAX_FIT_SAMPLES:
                idx = rng.choice(q.size, MAX_FIT_SAMPLES, replace=False)
                q, acc = q[idx], acc[idx]
            x = _features(q)
            keep, coef = [0, 1], {}
            rate = float(acc.mean())
            intercept = float(np.log(rate / (1.0 - rate)))  # no usable slope: the base rate
            while keep:
                lr = LogisticRegression(C=1e6, max_iter=1000).fit(x[:, keep], acc)
                coef = dict(zip(keep, lr.coef_[0], strict=True))
                if all(v >= 0 for v in coef.values()):
                    intercept = float(lr.intercept_[0])
                    break
                keep = [j for j in keep if coef[j] >= 0]
                coef = {}
            a, b = (float(coef.get(j, 0.0)) for j in (0, 1))
            rows.append((a, b, intercept))
            counts[f"{eps:g}"] = int(q.size)
        meta = {"samples_per_eps": counts, **dict(info or {})}
        return cls(tuple(grid), np.asarray(rows), meta)

    # ------------------------------------------------------------------ applying
    def _map(self, j: int, features: np.ndarray) -> np.ndarray:
        a, b, c = np.asarray(self.params, dtype=np.float64)[j]
        z = a * features[..., 0] + b * features[..., 1] + c
        return 1.0 / (1.0 + np.exp(-z))

    def apply(self, confidence: np.ndarray, eps: float) -> np.ndarray:
        """Recalibrated confidence, same shape (and float dtype) as ``confidence``."""
        q = np.asarray(confidence)
        grid = np.asarray(self.eps_grid)
        e = float(np.clip(eps, grid[0], grid[-1]))
        j = int(np.searchsorted(grid, e))
        f = _features(q)
        if j >= grid.size or grid[j] == e or j == 0:
            out = self._map(min(j, grid.size - 1), f)
        else:
            w = (e - grid[j - 1]) / (grid[j] - grid[j - 1])
            out = (1.0 - w) * self._map(j - 1, f) + w * self._map(j, f)
        return out.astype(q.dtype if np.issubdtype(q.dtype, np.floating) else np.float64)

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "method": "beta calibration per eps: sigmoid(a ln q - b ln(1 - q) + c), a, b >= 0",
            "eps_grid": [float(e) for e in self.eps_grid],
            "params": [[float(v) for v in row] for row in np.asarray(self.params)],
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfidenceRecalibration:
        if not isinstance(data, Mapping):
            raise RecalibrationError("probe_recalibration: expected a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise RecalibrationError(
                f"probe_recalibration: version {data.get('version')!r} is not supported "
                f"(expected {FORMAT_VERSION}); re-run `world-monitor calibrate`"
            )
        try:
            grid = tuple(float(e) for e in data["eps_grid"])
            params = np.asarray(data["params"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecalibrationError(f"probe_recalibration: missing or ill-typed ({exc})") from exc
        return cls(grid, params, dict(data.get("info", {})))


def correctness_samples(
    confidence: np.ndarray, abs_error: np.ndarray, eps_grid: Sequence[float]
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """``{ε: (q̂, 1[|x̂ − x*| ≤ ε])}`` from ``confidence [..., E, C, h, w]`` (ε-major axis -4)
    and ``abs_error [..., C, h, w]`` (the label of method.md §1)."""
    q = np.asarray(confidence)
    err = np.asarray(abs_error)
    if q.shape[-4] != len(eps_grid) or q.shape[:-4] + q.shape[-3:] != err.shape:
        raise RecalibrationError(
            f"confidence {q.shape} does not match errors {err.shape} x {len(eps_grid)} eps"
        )
    return {
        float(e): (q[..., j, :, :, :].ravel(), (err <= e).ravel()) for j, e in enumerate(eps_grid)
    }
