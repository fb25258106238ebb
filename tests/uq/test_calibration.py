"""ECE/MCE/Brier/BSS/AUROC of the streaming accumulator, reliability PNG, rank correlations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from world_monitor.uq.calibration import (
    EPS_GRID,
    CalibrationAccumulator,
    bin_index,
    confidence_error_correlation,
    per_frame_means,
    plot_reliability,
)

torch.set_num_threads(1)


def test_bin_edges() -> None:
    # [k/20, (k+1)/20) with the last bin closed: 1.0 -> bin 19, 0.05 -> bin 1, 0.0499 -> bin 0
    assert bin_index(np.array([0.0, 0.0499, 0.05, 0.5, 0.9999, 1.0])).tolist() == [
        0,
        0,
        1,
        10,
        19,
        19,
    ]


def test_hand_computed_example() -> None:
    conf = np.array([0.10, 0.12, 0.90, 0.92, 1.00])
    lab = np.array([0, 1, 1, 1, 0])
    # bins (width 0.05): 0.10, 0.12 -> bin 2; 0.90, 0.92 -> bin 18; 1.00 -> bin 19 (last, closed)
    # bin 2 : n=2, mean conf 0.11, accuracy 0.5 -> gap 0.39
    # bin 18: n=2, mean conf 0.91, accuracy 1.0 -> gap 0.09
    # bin 19: n=1, mean conf 1.00, accuracy 0.0 -> gap 1.00
    # ECE = (2·0.39 + 2·0.09 + 1·1.00) / 5 = 1.96 / 5 = 0.392 ; MCE = 1.00
    # Brier = (0.1² + 0.88² + 0.1² + 0.08² + 1²) / 5 = (0.01 + 0.7744 + 0.01 + 0.0064 + 1) / 5 = 0.36016
    # base rate 3/5 = 0.6 ; BSS = 1 − 0.36016 / (0.6·0.4) = 1 − 1.500667 = −0.500667
    acc = CalibrationAccumulator(eps_values=[0.5])
    acc.update(0.5, conf, lab)
    s = acc.stats(0.5)
    assert s.ece == pytest.approx(0.392)
    assert s.mce == pytest.approx(1.0)
    assert s.brier == pytest.approx(0.36016)
    assert s.base_rate == pytest.approx(0.6)
    assert s.brier_skill == pytest.approx(1 - 0.36016 / 0.24)
    assert s.bin_counts[2] == 2 and s.bin_counts[18] == 2 and s.bin_counts[19] == 1 and s.n == 5
    assert s.mce_bin_count == 1  # the MCE comes from the one-element bin 19
    assert s.mce_massive == pytest.approx(1.0)  # 5 elements: every bin holds >= 0.5 %


def test_mce_massive_leaves_out_nearly_empty_bins() -> None:
    """One mislabelled element alone in its bin sets MCE to 1; over bins with at least 0.5 % of
    the elements the worst gap is the real one."""
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.6, 0.8, 10_000)
    lab = rng.random(conf.size) < conf  # calibrated
    acc = CalibrationAccumulator(eps_values=[0.5])
    acc.update(0.5, np.append(conf, 0.02), np.append(lab, 1))
    s = acc.stats(0.5)
    assert s.mce == pytest.approx(0.98, abs=0.02) and s.mce_bin_count == 1
    assert s.mce_massive < 0.05
    assert acc.summary()["per_eps"]["0.5"]["mce_bin_count"] == 1


def test_perfect_calibration_and_streaming_equivalence() -> None:
    rng = np.random.default_rng(0)
    q = rng.uniform(size=200_000)
    # Bernoulli(q): calibrated by design
    y = (rng.uniform(size=q.size) < q).astype(np.float64)
    one, streamed = CalibrationAccumulator([0.1]), CalibrationAccumulator([0.1])
    one.update(0.1, q, y)
    for chunk in range(0, q.size, 30_000):
        streamed.update(0.1, torch.from_numpy(q[chunk : chunk + 30_000]), y[chunk : chunk + 30_000])
    a, b = one.stats(0.1), streamed.stats(0.1)
    assert a.ece < 0.01
    assert (
        a.ece == pytest.approx(b.ece)
        and a.auroc == pytest.approx(b.auroc)
        and a.bin_counts == b.bin_counts
    )
    assert a.brier_skill > 0.2  # informative confidences beat the base rate


def test_constant_base_rate_predictor() -> None:
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=50_000) < 0.3).astype(np.float64)
    q = np.full(y.shape, y.mean())
    acc = CalibrationAccumulator([0.2])
    acc.update(0.2, q, y)
    s = acc.stats(0.2)
    assert s.brier_skill == pytest.approx(0.0, abs=1e-9)
    assert s.auroc == pytest.approx(0.5)
    assert s.ece == pytest.approx(0.0, abs=1e-9)


def test_streamed_auroc_matches_sklearn_within_bound() -> None:
    rng = np.random.default_rng(2)
    y = (rng.uniform(size=100_000) < 0.4).astype(np.float64)
    q = 1 / (1 + np.exp(-(rng.normal(size=y.size) + 1.2 * (2 * y - 1))))
    acc = CalibrationAccumulator([1.0], n_auroc_bins=1000)
    acc.update(1.0, q, y)
    s = acc.stats(1.0)
    exact = roc_auc_score(y, q)
    assert s.auroc_error_bound < 2e-3
    assert abs(s.auroc - exact) <= s.auroc_error_bound + 1e-12


def test_summary_over_grid_and_reliability_png(tmp_path) -> None:
    rng = np.random.default_rng(3)
    acc = CalibrationAccumulator()
    assert acc.eps_values == list(EPS_GRID)
    for eps in EPS_GRID:
        q = rng.uniform(size=5000)
        acc.update(eps, q, (rng.uniform(size=q.size) < q).astype(float))
    summ = acc.summary()
    assert set(summ["per_eps"]) == {str(e) for e in EPS_GRID}
    assert summ["mean"]["ece"] < 0.05 and not math.isnan(summ["mean"]["auroc"])
    out = plot_reliability(acc, tmp_path / "rel.png", eps_values=[0.1, 0.5, 1.0], title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError):
        acc.update(0.15, [0.5], [1])
    with pytest.raises(ValueError, match="0/1"):
        acc.update(0.1, [0.5], [0.5])


def test_confidence_error_correlation() -> None:
    rng = np.random.default_rng(4)
    q = rng.uniform(size=2000)
    err = (1 - q) + 0.2 * rng.normal(size=q.size)
    r = confidence_error_correlation(q, err, max_samples=1000)
    assert r.n == 1000
    assert r.spearman_rho < -0.7 and r.kendall_tau < -0.5
    assert r.spearman_p < 1e-10 and r.kendall_p < 1e-10


def test_update_from_errors_and_per_frame_means() -> None:
    conf = torch.tensor([[[[0.9, 0.2]]], [[[0.8, 0.1]]]])  # [F=2, C=1, h=1, w=2]
    err = torch.tensor([[[[0.05, 0.5]]], [[[0.1, 0.7]]]])
    acc = CalibrationAccumulator([0.1])
    acc.update_from_errors(0.1, conf, err)  # labels: |err| ≤ 0.1 -> [1, 0, 1, 0]
    assert acc.stats(0.1).base_rate == pytest.approx(0.5)
    c, e = per_frame_means(conf, err)
    assert c.tolist() == pytest.approx([0.55, 0.45]) and e.tolist() == pytest.approx([0.275, 0.4])
