"""C³ labels, probe losses, ε sampling and the joint loss on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from world_monitor.training.losses import (
    DEFAULT_EPS_GRID,
    EpsilonSampler,
    c3_loss,
    context_loss_mask,
    correctness_labels_v,
    correctness_labels_x0,
    ddim_step_coefficient,
    masked_mean,
    mcc_confidence,
    mcc_targets,
    previous_timestep,
    probe_bce,
    probe_brier,
)

torch.set_num_threads(1)


def test_labels_match_formula_per_frame_eps() -> None:
    # B=1, F=2, C=1, h=1, w=3; |err| = [0.05, 0.2, 0.5] in frame 0 and [0.3, 0.3, 1.1] in frame 1
    v_target = torch.zeros(1, 2, 1, 1, 3)
    v_pred = torch.tensor([[[[[0.05, -0.2, 0.5]]], [[[0.3, -0.3, 1.1]]]]])
    eps = torch.tensor([[0.2, 0.3]])  # per (sample, frame)
    lab = correctness_labels_v(v_pred, v_target, eps)
    # |err| == ε counts as correct
    expected = torch.tensor([[[[[1.0, 1.0, 0.0]]], [[[1.0, 1.0, 0.0]]]]])
    assert torch.equal(lab, expected)
    assert torch.equal(
        correctness_labels_x0(v_pred, v_target, 0.25), (v_pred.abs() <= 0.25).float()
    )
    assert torch.equal(correctness_labels_v(v_pred, v_target, 0.1).sum(), torch.tensor(1.0))


def test_labels_have_no_gradient() -> None:
    v_pred = torch.randn(2, 3, 4, 2, 2, requires_grad=True)
    lab = correctness_labels_v(v_pred, torch.zeros_like(v_pred), 0.5)
    assert not lab.requires_grad


def test_ddim_coefficient_and_rescaled_labels() -> None:
    ac = torch.tensor([0.9, 0.64, 0.36, 0.16])
    t, tp = torch.tensor([2]), torch.tensor([0])
    # |√(0.36·0.1) − √(0.9·0.64)| = |0.18974 − 0.75895| = 0.56921
    c = ddim_step_coefficient(ac, t, tp)
    assert c.item() == pytest.approx(abs(math.sqrt(0.036) - math.sqrt(0.576)), rel=1e-6)
    # previous < 0 -> final ᾱ = 1: |√(ᾱ_t·0) − √(1·(1−ᾱ_t))| = √(1 − 0.9)
    assert ddim_step_coefficient(ac, torch.tensor([0]), torch.tensor([-1])).item() == pytest.approx(
        math.sqrt(0.1)
    )
    assert torch.equal(
        previous_timestep(torch.tensor([999, 10]), 1000, 10), torch.tensor([899, -90])
    )
    # |Δv| = 0.5 fails ε = 0.3 unscaled, passes once scaled: 0.56921·0.5 = 0.2846 ≤ 0.3
    v_pred, v_tgt = torch.full((1, 1, 1, 1, 1), 0.5), torch.zeros(1, 1, 1, 1, 1)
    assert correctness_labels_v(v_pred, v_tgt, 0.3).item() == 0.0
    lab = correctness_labels_v(
        v_pred, v_tgt, 0.3, alphas_cumprod=ac, timesteps=t, prev_timesteps=tp
    )
    assert lab.item() == 1.0
    lab = correctness_labels_v(
        v_pred, v_tgt, 0.28, alphas_cumprod=ac, timesteps=t, prev_timesteps=tp
    )
    assert lab.item() == 0.0
    with pytest.raises(ValueError, match="needs alphas_cumprod"):
        correctness_labels_v(v_pred, v_tgt, 0.3, alphas_cumprod=ac)


def test_probe_losses_and_mask() -> None:
    logits = torch.tensor([[[[[0.0, 2.0]]], [[[-1.0, 3.0]]]]])  # [1, 2, 1, 1, 2]
    labels = torch.tensor([[[[[1.0, 0.0]]], [[[1.0, 1.0]]]]])
    mask = context_loss_mask(1, 2, 1)  # frame 0 is context
    assert mask.tolist() == [[False, True]]
    sig = torch.sigmoid(torch.tensor([-1.0, 3.0]))
    assert probe_brier(logits, labels, mask).item() == pytest.approx(((sig - 1) ** 2).mean().item())
    assert probe_bce(logits, labels, mask).item() == pytest.approx((-torch.log(sig)).mean().item())
    assert masked_mean(torch.ones(1, 2, 1, 1, 2), torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0


def test_epsilon_sampler_modes() -> None:
    g = torch.Generator().manual_seed(0)
    e = EpsilonSampler("grid").sample(64, 5, generator=g)
    assert e.shape == (64, 5)
    assert set(torch.round(e * 10).int().unique().tolist()) <= {
        round(x * 10) for x in DEFAULT_EPS_GRID
    }
    c = EpsilonSampler("continuous", low=0.1, high=1.0).sample(1000, 2, generator=g)
    assert c.min() >= 0.1 and c.max() <= 1.0 and len(c.unique()) > 100
    u = EpsilonSampler.uniform_grid(0.1, 1.0, 4)
    assert u.grid == pytest.approx((0.1, 0.4, 0.7, 1.0))
    with pytest.raises(ValueError):
        EpsilonSampler("nope")  # type: ignore[arg-type]


def test_c3_loss_gradients_and_mixture() -> None:
    torch.manual_seed(0)
    v_pred = torch.randn(2, 3, 4, 2, 2, requires_grad=True)
    v_tgt = torch.randn(2, 3, 4, 2, 2)
    logits = torch.zeros(2, 3, 4, 2, 2, requires_grad=True)
    mask = context_loss_mask(2, 3, 1)
    out = c3_loss(v_pred, v_tgt, logits, EpsilonSampler().sample(2, 3), loss_mask=mask, lam=0.5)
    assert out.total.item() == pytest.approx(0.5 * out.mse_v.item() + 0.5 * out.probe.item())
    # zero-init head: q̂ = 0.5
    assert out.probe.item() == pytest.approx(math.log(2.0), rel=1e-6)
    out.total.backward()
    assert v_pred.grad is not None and logits.grad is not None
    # context frame
    assert torch.all(v_pred.grad[:, 0] == 0) and torch.all(logits.grad[:, 0] == 0)
    # probe loss sends no gradient into v_pred: λ=1 leaves v_pred without a gradient path
    v2 = v_pred.detach().clone().requires_grad_(True)
    c3_loss(v2, v_tgt, logits.detach().clone().requires_grad_(True), 0.5, lam=1.0).total.backward()
    assert torch.all(v2.grad == 0)


def test_mcc_targets_and_confidence() -> None:
    edges = torch.tensor([0.1, 0.5])
    err = torch.tensor([0.05, 0.1, 0.3, 0.9])
    assert mcc_targets(err, edges).tolist() == [0, 0, 1, 2]
    logits = torch.zeros(1, 1, 3, 1, 1)  # uniform over 3 bins
    assert mcc_confidence(logits, 0.5, edges).item() == pytest.approx(2 / 3)
    assert mcc_confidence(logits, 0.05, edges).item() == 0.0
