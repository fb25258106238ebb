"""Post-hoc recalibration of the probe's confidence: fit, apply, interpolate, validate."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.uq.calibration import CalibrationAccumulator
from world_monitor.uq.recalibration import (
    ConfidenceRecalibration,
    RecalibrationError,
    correctness_samples,
)


def _truth(q: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(a * np.log(q) - b * np.log1p(-q) + c)))


def _miscalibrated(n: int, abc: tuple[float, float, float], seed: int):
    """Confidences q whose true accuracy is the beta-calibration curve ``abc`` of q."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.001, 0.999, n)
    return q, rng.uniform(0, 1, n) < _truth(q, *abc)


UNDER = (1.7, 1.7, 0.8)  # under-confident: accuracy above q (the probe at small eps)
OVER = (0.5, 0.5, -0.3)  # over-confident towards the extremes


def _ece(q: np.ndarray, acc: np.ndarray) -> tuple[float, float]:
    a = CalibrationAccumulator([0.5])
    a.update(0.5, q, acc)
    s = a.stats(0.5)
    return s.ece, s.mce


def test_fit_recovers_the_true_accuracy_curve_and_calibrates_held_out_data() -> None:
    fit = ConfidenceRecalibration.fit(
        {0.1: _miscalibrated(200_000, UNDER, 0), 0.2: _miscalibrated(200_000, OVER, 1)}
    )
    grid = np.linspace(0.05, 0.95, 19)
    assert np.abs(fit.apply(grid, 0.1) - _truth(grid, *UNDER)).max() < 0.02
    assert np.abs(fit.apply(grid, 0.2) - _truth(grid, *OVER)).max() < 0.02
    q, acc = _miscalibrated(100_000, UNDER, 7)  # held out
    before, after = _ece(q, acc), _ece(fit.apply(q, 0.1), acc)
    assert before[0] > 0.1 and after[0] < 0.01 and after[1] < 0.05
    # monotone maps keep the ranking
    assert np.all(np.diff(fit.apply(np.sort(q), 0.1)) >= 0)


def test_a_decreasing_fit_is_refused_rather_than_reversing_the_ranking() -> None:
    rng = np.random.default_rng(3)
    q = rng.uniform(0.001, 0.999, 50_000)
    acc = rng.uniform(0, 1, q.size) < 1.0 - q  # accuracy falls with confidence
    fit = ConfidenceRecalibration.fit({0.5: (q, acc)})
    assert np.all(fit.params[:, :2] >= 0)
    assert np.all(np.diff(fit.apply(np.sort(q), 0.5)) >= 0)


def test_between_grid_eps_the_maps_interpolate_and_outside_they_clip() -> None:
    fit = ConfidenceRecalibration.fit(
        {0.1: _miscalibrated(50_000, UNDER, 0), 0.3: _miscalibrated(50_000, OVER, 1)}
    )
    q = np.linspace(0.01, 0.99, 50)
    mid = 0.5 * (fit.apply(q, 0.1) + fit.apply(q, 0.3))
    assert np.allclose(fit.apply(q, 0.2), mid)
    assert np.allclose(fit.apply(q, 0.01), fit.apply(q, 0.1))
    assert np.allclose(fit.apply(q, 5.0), fit.apply(q, 0.3))
    q32 = np.full((2, 3), 0.5, dtype=np.float32)
    out = fit.apply(q32, 0.2)
    assert out.dtype == np.float32 and out.shape == q32.shape
    assert np.isfinite(fit.apply(np.array([0.0, 1.0]), 0.1)).all()  # saturated probe outputs


def test_round_trip_and_tampering_is_rejected() -> None:
    fit = ConfidenceRecalibration.fit({0.5: _miscalibrated(10_000, UNDER, 3)}, info={"split": "x"})
    doc = fit.to_dict()
    again = ConfidenceRecalibration.from_dict(doc)
    assert again.eps_grid == (0.5,) and np.allclose(again.params, fit.params)
    assert again.info["split"] == "x" and again.info["samples_per_eps"] == {"0.5": 10_000}
    for broken, match in (
        ({**doc, "params": [[-1.0, 1.0, 0.0]]}, ">= 0"),
        ({**doc, "params": [[1.0, float("nan"), 0.0]]}, "finite"),
        ({**doc, "params": [[1.0, 1.0]]}, "params must be"),
        ({**doc, "eps_grid": [0.5, 0.4], "params": [[1, 1, 0]] * 2}, "eps_grid"),
        ({**doc, "version": 1}, "version"),
        ({k: v for k, v in doc.items() if k != "params"}, "missing"),
        ([1, 2], "JSON object"),
    ):
        with pytest.raises(RecalibrationError, match=match):
            ConfidenceRecalibration.from_dict(broken)
    with pytest.raises(RecalibrationError, match="100"):
        ConfidenceRecalibration.fit({0.5: (np.zeros(10), np.zeros(10))})
    with pytest.raises(RecalibrationError, match="all True"):
        ConfidenceRecalibration.fit({0.5: (np.full(200, 0.9), np.ones(200, bool))})


def test_correctness_samples_follow_the_label_formula() -> None:
    conf = np.random.default_rng(0).uniform(size=(2, 3, 2, 4, 5, 5))  # [B, H, E, C, h, w]
    err = np.abs(np.random.default_rng(1).normal(0, 0.3, size=(2, 3, 4, 5, 5)))
    out = correctness_samples(conf, err, (0.1, 0.4))
    q, acc = out[0.4]
    assert q.shape == acc.shape == (2 * 3 * 4 * 5 * 5,)
    assert np.array_equal(q, conf[:, :, 1].ravel())
    assert np.array_equal(acc, (err <= 0.4).ravel())
    with pytest.raises(RecalibrationError, match="does not match"):
        correctness_samples(conf, err[:1], (0.1, 0.4))
