"""Evaluation plumbing on synthetic outputs whose calibration is known, plus its helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from world_monitor.data.dataset import EpisodeDataset
from world_monitor.models.probe import C3Probe, ProbeConfig
from world_monitor.training.evaluate import MultiEpsilonProbe, SplitEvaluator, select_windows, ssim
from world_monitor.uq.calibration import EPS_GRID

B, H, C, S = 64, 3, 4, 6


def _synthetic(confidence: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions whose error is 0 with probability ``p_true`` and 2 (> every eps) otherwise,
    so that the label ``1[|x_hat - x*| <= eps]`` is Bernoulli(p_true) for every eps."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(B, H, C, S, S, generator=g)
    right = torch.rand(target.shape, generator=g) < confidence
    pred = torch.where(right, target, target + 2.0)
    return pred, target


def _evaluator(conf: torch.Tensor, p_true: torch.Tensor) -> dict:
    pred, target = _synthetic(p_true)
    ev = SplitEvaluator(EPS_GRID, 0.5, H)
    q = conf.unsqueeze(2).expand(B, H, len(EPS_GRID), C, S, S)
    ev.update(q, pred, target, target[:, 0])
    return ev.summary()


def test_calibrated_confidence_has_small_ece_and_high_auroc() -> None:
    g = torch.Generator().manual_seed(1)
    conf = torch.rand(B, H, C, S, S, generator=g)
    s = _evaluator(conf, conf)  # labels drawn with exactly the stated probability
    assert s["ece"] < 0.02
    assert s["mce"] < 0.1
    assert s["auroc"] > 0.75
    assert s["brier_skill"] > 0.2
    assert abs(s["base_rate"] - 0.5) < 0.02
    # informative confidence: high confidence <-> low error
    assert s["correlation_frame"]["spearman_rho"] < 0
    assert s["correlation_element"]["spearman_rho"] < -0.5
    assert s["n_windows"] == B


def test_overconfident_constant_is_penalised() -> None:
    conf = torch.full((B, H, C, S, S), 0.9)
    s = _evaluator(conf, torch.full_like(conf, 0.5))
    assert abs(s["ece"] - 0.4) < 0.02
    assert abs(s["mce"] - 0.4) < 0.02
    assert abs(s["auroc"] - 0.5) < 1e-6
    assert s["brier_skill"] < 0
    assert abs(s["mean_confidence"] - 0.9) < 1e-6


def test_per_step_and_copy_last_baseline() -> None:
    conf = torch.full((B, H, C, S, S), 0.5)
    pred, target = _synthetic(conf)
    frames = torch.rand(B, H, 3, 16, 16) * 2 - 1
    ev = SplitEvaluator(EPS_GRID, 0.5, H)
    q = conf.unsqueeze(2).expand(B, H, len(EPS_GRID), C, S, S)
    ev.update(q, target, target, target[:, 0], frames, frames, frames[:, 0], frames)
    s = ev.summary()
    assert s["mean_latent_l1"] == 0.0
    assert s["per_step"]["latent_l1_copy_last"][0] == 0.0  # step 1 equals the "last context" here
    assert s["per_step"]["latent_l1_copy_last"][1] > 0.5
    assert s["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert s["psnr"] > 90  # identical frames: the PSNR cap
    assert len(s["per_step"]["psnr_copy_last"]) == H


def test_ssim_of_different_images_is_lower() -> None:
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert float(ssim(x, -x).max()) < 0.5


def test_multi_epsilon_probe_matches_single_calls() -> None:
    torch.manual_seed(0)
    probe = C3Probe(ProbeConfig(dim=32, heads=2, latent_size=(4, 4), patch_size=2))
    with torch.no_grad():
        for p in probe.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # leave the zero init: outputs must differ per eps
    hidden, cond = torch.randn(2, 3, 4, 32), torch.randn(2, 3, 32)
    multi = MultiEpsilonProbe(probe, (0.1, 0.5, 1.0))
    out = multi(hidden, cond).view(2, 3, 3, 4, 4, 4)
    for j, eps in enumerate((0.1, 0.5, 1.0)):
        torch.testing.assert_close(out[:, :, j], probe(hidden, cond, eps))
    assert not torch.allclose(out[:, :, 0], out[:, :, 2])


def test_select_windows_respects_onset(tiny_dataset: Path) -> None:
    ds = EpisodeDataset(tiny_dataset).select(split="test", shift="lighting")
    wins = select_windows(ds, 5, 1, 100, 0, after_onset=True)
    onsets = {i: r.onset or 0 for i, r in enumerate(ds.index)}
    assert wins and all(start >= onsets[e] for e, start in wins)
    assert {e for e, _ in wins} == set(onsets)
    assert len(select_windows(ds, 5, 1, 3, 0, after_onset=True)) == 3
    # deterministic for a seed
    assert select_windows(ds, 5, 1, 4, 7, after_onset=False) == select_windows(
        ds, 5, 1, 4, 7, after_onset=False
    )
