"""C3 probe: shapes, exact 0.5 at init, stop-gradient, eps dependence (CS-BC), FSC contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from world_monitor.models.dynamics import (
    DynamicsConfig,
    DynamicsTransformer,
    make_scheduler,
    training_targets,
)
from world_monitor.models.probe import C3Probe, ProbeConfig


def _features(cfg: DynamicsConfig, b: int = 2, f: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(b, f, cfg.tokens_per_frame, cfg.dim), torch.randn(b, f, cfg.dim)


@pytest.mark.parametrize("variant", ["cs_bc", "fsc"])
def test_shapes_and_exact_half_at_init(tiny_dyn_config: DynamicsConfig, variant: str) -> None:
    probe = C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config, variant=variant))
    hidden, cond = _features(tiny_dyn_config)
    eps = torch.rand(2, 3) if variant == "cs_bc" else None
    logits = probe(hidden, cond, eps)
    assert logits.shape == (2, 3, 4, 8, 8)
    assert bool((probe.confidence(hidden, cond, eps) == 0.5).all())


def test_epsilon_contract(tiny_dyn_config: DynamicsConfig) -> None:
    hidden, cond = _features(tiny_dyn_config)
    with pytest.raises(ValueError):
        C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config))(hidden, cond)
    with pytest.raises(ValueError):
        C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config, variant="fsc"))(hidden, cond, 0.3)
    with pytest.raises(ValueError):
        C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config, variant="mcc"))
    probe = C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config))
    for eps in (0.3, torch.tensor([0.1, 0.2]), torch.rand(2, 3)):
        assert probe(hidden, cond, eps).shape == (2, 3, 4, 8, 8)
    cfg = ProbeConfig.from_dynamics(tiny_dyn_config)
    assert ProbeConfig.from_dict(cfg.to_dict()) == cfg


def test_stop_gradient_holds(tiny_dyn_config: DynamicsConfig, randomize) -> None:
    """Backbone gradients from the MSE loss are identical with or without the probe loss."""
    model = randomize(DynamicsTransformer(tiny_dyn_config))
    probe = randomize(C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config)))
    sched = make_scheduler(tiny_dyn_config)
    x0 = torch.randn(2, 3, 4, 8, 8)
    t = torch.randint(0, 1000, (2, 3))
    a = torch.randn(2, 3, 4)
    noisy, v_target = training_targets(sched, x0, torch.randn_like(x0), t)

    def backbone_grads(extra: str) -> list[torch.Tensor]:
        model.zero_grad()
        probe.zero_grad()
        v, hidden, cond = model(noisy, t, a)
        loss = F.mse_loss(v, v_target)
        if extra == "probe":
            labels = ((v - v_target).abs() <= 0.5).float()
            loss = loss + F.binary_cross_entropy_with_logits(probe(hidden, cond, 0.5), labels)
        elif extra == "leak":  # control: a loss that does reach the backbone must be detected
            loss = loss + 1e-3 * hidden.square().mean()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    without = backbone_grads("none")
    with_probe = backbone_grads("probe")
    assert any(bool(p.grad.abs().sum() > 0) for p in probe.parameters())  # the probe does learn
    for g0, g1 in zip(without, with_probe, strict=True):
        assert torch.equal(g0, g1)
    leaked = backbone_grads("leak")
    assert any(not torch.equal(g0, g1) for g0, g1 in zip(without, leaked, strict=True))


def test_cs_bc_learns_that_larger_eps_means_higher_confidence(
    tiny_dyn_config: DynamicsConfig,
) -> None:
    gen = torch.Generator().manual_seed(0)
    probe = C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config))
    hidden, cond = (
        torch.randn(4, 2, 16, 32, generator=gen),
        torch.randn(4, 2, 32, generator=gen),
    )
    err = torch.rand(4, 2, 4, 8, 8, generator=gen)  # toy |error| per element, uniform in [0, 1]
    opt = torch.optim.Adam(probe.parameters(), lr=3e-3)
    grid = torch.linspace(0.1, 1.0, 10)
    for _ in range(60):
        eps = grid[torch.randint(0, 10, (4, 2), generator=gen)]
        labels = (err <= eps.view(4, 2, 1, 1, 1)).float()
        loss = F.binary_cross_entropy_with_logits(probe(hidden, cond, eps), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = [probe.confidence(hidden, cond, e).mean().item() for e in (0.1, 0.5, 1.0)]
    assert q[0] + 0.1 < q[1] < q[2] - 0.1, q
