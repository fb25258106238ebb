"""AUROC / TPR@FPR, split-conformal thresholds, confidence intervals and lead times."""

from __future__ import annotations

import math

import numpy as np
import pytest

from world_monitor.uq.detection import (
    auroc,
    bootstrap_ci,
    conformal_threshold,
    episode_conformal_threshold,
    false_alarm_rate,
    first_alarm_step,
    lead_time,
    roc,
    tpr_at_fpr,
    wilson_interval,
)


def test_auroc_roc_and_tpr_at_fpr() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # 16 pos/neg pairs, only (0.35 vs 0.4) misordered -> 15/16
    assert auroc(scores, labels) == pytest.approx(15 / 16)
    assert roc(scores, labels).fpr[0] == 0.0
    assert tpr_at_fpr(scores, labels, 0.0) == pytest.approx(0.75)
    assert tpr_at_fpr(scores, labels, 0.25) == pytest.approx(1.0)
    assert math.isnan(auroc([0.1, 0.2], [0, 0]))


def test_conformal_index_and_bound() -> None:
    s = np.random.default_rng(0).uniform(size=99)
    c = conformal_threshold(s, alpha=0.1)
    assert c.k == 90  # ⌈(99 + 1)·0.9⌉
    assert c.threshold == np.sort(s)[89]
    assert c.bound == pytest.approx(0.1)
    assert c.achieved == pytest.approx(9 / 99)
    # k = ⌈20·0.95⌉ = 19 = n -> the maximum
    c2 = conformal_threshold(np.arange(19.0), alpha=0.05)
    assert c2.k == 19 and c2.threshold == 18.0
    c3 = conformal_threshold(np.arange(9.0), alpha=0.05)  # k = 10 > n -> cannot certify
    assert math.isinf(c3.threshold) and c3.to_dict()["threshold"] == "inf"


def test_conformal_false_alarm_on_fresh_draws() -> None:
    rng = np.random.default_rng(1)
    alpha, n = 0.1, 50
    rates = []
    for _ in range(400):
        thr = conformal_threshold(rng.uniform(size=n), alpha).threshold
        rates.append(false_alarm_rate(rng.uniform(size=200), thr))
    # E[FAR] = 1 − k/(n+1) = 1 − 46/51 = 0.098 ≤ α; Monte-Carlo s.e. ≈ 0.002
    assert np.mean(rates) <= alpha + 0.01
    assert np.mean(rates) >= alpha - 1 / (n + 1) - 0.01


def test_episode_variant_uses_maxima() -> None:
    eps = [np.array([0.1, 0.5]), np.array([0.2]), np.array([0.9, 0.3, 0.4])]
    # maxima [0.5, 0.2, 0.9]; k = ⌈4·0.75⌉ = 3
    c = episode_conformal_threshold(eps, alpha=0.25)
    assert c.k == 3 and c.threshold == 0.9 and c.n == 3


def test_wilson_and_bootstrap() -> None:
    lo, hi = wilson_interval(5, 100)
    assert lo < 0.05 < hi and lo > 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(40), np.ones(10)].astype(int)
    s = rng.normal(size=50) + y
    point, lo, hi = bootstrap_ci(lambda a, b: auroc(a, b), s, y, n_resamples=200, stratify=y)
    assert lo <= point <= hi and 0.5 < point <= 1.0


def test_first_alarm_and_lead_time() -> None:
    assert first_alarm_step([0.1, 0.2, 0.7, 0.9], 0.5) == 2
    assert first_alarm_step([0.1, 0.2], 0.5) is None
    assert lead_time(12, 20) == 8.0
    assert lead_time(12, 20, fps=4.0) == 2.0
    assert lead_time(None, 20) is None and lead_time(3, None) is None
