"""Dynamics DiT and deterministic predictor: shapes, causality, action alignment, targets, overfit."""

from __future__ import annotations

import torch

from world_monitor.models.dynamics import (
    DeterministicPredictor,
    DynamicsConfig,
    DynamicsTransformer,
    make_scheduler,
    sample_diffusion_forcing_timesteps,
    training_targets,
)


def _inputs(
    cfg: DynamicsConfig, b: int = 2, f: int = 5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(b, f, cfg.latent_channels, *cfg.latent_size)
    t = torch.randint(0, cfg.num_train_timesteps, (b, f))
    a = torch.randn(b, f, cfg.action_dim)
    return x, t, a


def test_shapes_and_zero_init(tiny_dyn_config: DynamicsConfig) -> None:
    model = DynamicsTransformer(tiny_dyn_config)
    x, t, a = _inputs(tiny_dyn_config)
    v, hidden, cond = model(x, t, a)
    assert v.shape == x.shape
    assert hidden.shape == (2, 5, tiny_dyn_config.tokens_per_frame, tiny_dyn_config.dim)
    assert cond.shape == (2, 5, tiny_dyn_config.dim)
    assert not bool(v.any())  # adaLN-Zero final layer: v = 0 at init


def test_temporal_attention_is_causal(tiny_dyn_config: DynamicsConfig, randomize) -> None:
    model = randomize(DynamicsTransformer(tiny_dyn_config)).eval()
    x, t, a = _inputs(tiny_dyn_config)
    v1, h1, _ = model(x, t, a)
    x2, t2, a2 = x.clone(), t.clone(), a.clone()
    x2[:, 3:] += 1.0
    t2[:, 3:] = 7
    a2[:, 2:] += 1.0  # actions[2] conditions frame 3 only
    v2, h2, _ = model(x2, t2, a2)
    assert torch.allclose(v1[:, :3], v2[:, :3], atol=1e-6)
    assert torch.allclose(h1[:, :3], h2[:, :3], atol=1e-6)
    assert not torch.allclose(v1[:, 3:], v2[:, 3:], atol=1e-4)


def test_action_alignment(tiny_dyn_config: DynamicsConfig, randomize) -> None:
    """actions[t] drives frame t+1; the last stored action is unused; invalid = null embedding."""
    model = randomize(DynamicsTransformer(tiny_dyn_config)).eval()
    _, t, a = _inputs(tiny_dyn_config)
    c = model.condition(t, a)
    a_last = a.clone()
    a_last[:, -1] += 5.0
    assert torch.equal(model.condition(t, a_last), c)
    a1 = a.clone()
    a1[:, 1] += 5.0
    c1 = model.condition(t, a1)
    assert torch.equal(c1[:, :2], c[:, :2]) and not torch.allclose(c1[:, 2], c[:, 2])
    valid = torch.ones(2, 5)
    valid[:, 1] = 0
    c_inv = model.condition(t, a1, valid)
    assert torch.equal(c_inv, model.condition(t, a, valid))  # invalid action content is ignored


def test_training_targets_match_v_formula(tiny_dyn_config: DynamicsConfig) -> None:
    sched = make_scheduler(tiny_dyn_config)
    assert sched.config.prediction_type == "v_prediction"
    x0 = torch.randn(2, 3, 4, 8, 8)
    noise = torch.randn_like(x0)
    t = torch.tensor([[0, 500, 999], [10, 20, 30]])
    noisy, v = training_targets(sched, x0, noise, t)
    ab = sched.alphas_cumprod[t].view(2, 3, 1, 1, 1)
    expected = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    expected[0, 0] = x0[0, 0]  # t = 0 means exactly clean (inference context convention)
    assert torch.allclose(noisy, expected, atol=1e-5)
    assert torch.allclose(v, ab.sqrt() * noise - (1 - ab).sqrt() * x0, atol=1e-5)
    model = DynamicsTransformer(tiny_dyn_config)
    n2, v2 = model.training_targets(x0, noise, t)
    assert torch.equal(n2, noisy) and torch.equal(v2, v)
    ts = sample_diffusion_forcing_timesteps(
        4, 6, 1000, num_clean_context=2, generator=torch.Generator().manual_seed(0)
    )
    assert ts.shape == (4, 6) and bool((ts[:, :2] == 0).all())


def test_dynamics_overfits_fixed_batch(tiny_dyn_config: DynamicsConfig) -> None:
    model = DynamicsTransformer(tiny_dyn_config)
    sched = make_scheduler(tiny_dyn_config)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 4, 8, 8, generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    t = sample_diffusion_forcing_timesteps(2, 4, 1000, num_clean_context=1, generator=gen)
    a = torch.randn(2, 4, 4, generator=gen)
    noisy, v_target = training_targets(sched, x0, noise, t)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(noisy, t, a)[0], v_target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_deterministic_predictor(tiny_dyn_config: DynamicsConfig) -> None:
    model = DeterministicPredictor(tiny_dyn_config)
    ctx = torch.randn(2, 2, 4, 8, 8)
    a = torch.randn(2, 6, 4)
    future, hidden, cond = model(ctx, a)
    assert future.shape == (2, 4, 4, 8, 8)
    assert hidden.shape[:2] == (2, 6) and cond.shape == (2, 6, tiny_dyn_config.dim)
    assert torch.equal(future, ctx[:, -1:].expand_as(future))  # zero-init: "nothing moves"
    target = torch.randn_like(future)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(ctx, a)[0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first


def test_config_round_trip(tiny_dyn_config: DynamicsConfig) -> None:
    assert DynamicsConfig.from_dict(tiny_dyn_config.to_dict()) == tiny_dyn_config
