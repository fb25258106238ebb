"""Rollout: shapes and seeded determinism per mode; confidence read only at each new frame's
final denoising step and never re-estimated."""

from __future__ import annotations

import pytest
import torch

from world_monitor.models.dynamics import (
    DeterministicPredictor,
    DynamicsConfig,
    DynamicsTransformer,
)
from world_monitor.models.probe import C3Probe, ProbeConfig
from world_monitor.models.rollout import (
    RolloutConfig,
    WorldModelRollout,
    frame_aligned_actions,
)
from world_monitor.models.vae import FrameVAE, VAEConfig

K, H = 2, 4


def _rollout(cfg: DynamicsConfig, randomize, **rcfg) -> WorldModelRollout:
    dyn = randomize(DynamicsTransformer(cfg)).eval()
    pred = randomize(DeterministicPredictor(cfg)).eval()
    probe = randomize(C3Probe(ProbeConfig.from_dynamics(cfg))).eval()
    vae = FrameVAE(VAEConfig(image_size=32, block_out_channels=(32,), norm_num_groups=8)).eval()
    return WorldModelRollout(probe, dyn, pred, vae, RolloutConfig(**rcfg))


def _inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(b, K, 4, 8, 8, generator=gen), torch.randn(b, H, 4, generator=gen)


@pytest.mark.parametrize("mode", ["autoregressive", "joint", "deterministic"])
def test_shapes_and_determinism(tiny_dyn_config: DynamicsConfig, randomize, mode: str) -> None:
    roll = _rollout(tiny_dyn_config, randomize, mode=mode, num_inference_steps=3)
    ctx, chunk = _inputs()
    r1 = roll(ctx, chunk, generator=torch.Generator().manual_seed(0), decode=True)
    r2 = roll(ctx, chunk, generator=torch.Generator().manual_seed(0))
    assert r1.latents.shape == r1.confidence.shape == (2, H, 4, 8, 8)
    assert r1.frames is not None and r1.frames.shape == (2, H, 3, 32, 32)
    assert bool(((r1.confidence > 0) & (r1.confidence < 1)).all())
    assert torch.equal(r1.latents, r2.latents) and torch.equal(r1.confidence, r2.confidence)
    if mode != "deterministic":
        r3 = roll(ctx, chunk, generator=torch.Generator().manual_seed(1))
        assert not torch.equal(r1.latents, r3.latents)
    single = roll(ctx[0], chunk[0], generator=torch.Generator().manual_seed(0))
    assert single.latents.shape == (H, 4, 8, 8)


@pytest.mark.parametrize("mode", ["autoregressive", "joint"])
def test_probe_read_only_at_final_step_of_new_frames(
    tiny_dyn_config: DynamicsConfig, randomize, mode: str
) -> None:
    """Uncached path: DenoiseStep (denoiser + probe) runs once per new frame, at its last step."""
    steps = 3
    roll = _rollout(
        tiny_dyn_config, randomize, mode=mode, num_inference_steps=steps, kv_cache=False
    )
    roll.scheduler.set_timesteps(steps)
    last_t = int(roll.scheduler.timesteps[-1])
    probe_calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    dyn_calls: list[torch.Tensor] = []
    roll.step.register_forward_hook(
        lambda m, inp, out: probe_calls.append((inp[1].clone(), out[1].clone()))
    )
    roll.dynamics.register_forward_hook(lambda m, inp, out: dyn_calls.append(inp[1].clone()))
    ctx, chunk = _inputs()
    res = roll(ctx, chunk, epsilon=0.4, generator=torch.Generator().manual_seed(0))

    if mode == "autoregressive":
        assert len(dyn_calls) == H * steps and len(probe_calls) == H  # probe once per new frame
        for i, (ts, logits) in enumerate(probe_calls):
            assert ts.shape[1] == K + i + 1
            assert bool((ts[:, -1] == last_t).all()) and bool((ts[:, :-1] == 0).all())
            assert torch.equal(res.confidence[:, i], torch.sigmoid(logits[:, -1]))
    else:
        assert len(dyn_calls) == steps and len(probe_calls) == 1
        ts, logits = probe_calls[0]
        assert bool((ts[:, K:] == last_t).all()) and bool((ts[:, :K] == 0).all())
        assert torch.equal(res.confidence, torch.sigmoid(logits[:, K:]))


def test_kv_cached_autoregressive_reads_probe_only_at_final_steps(
    tiny_dyn_config: DynamicsConfig, randomize, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cached path: logits are produced exactly once per new frame, for that frame only, from a
    pass at the last DDIM timestep; other probe calls only fill the KV cache (no logits)."""
    steps = 3
    roll = _rollout(tiny_dyn_config, randomize, mode="autoregressive", num_inference_steps=steps)
    roll.scheduler.set_timesteps(steps)
    last_t = int(roll.scheduler.timesteps[-1])
    dyn_ts: list[torch.Tensor] = []
    probe_calls: list[tuple[int, bool, torch.Tensor | None]] = []
    orig_dyn, orig_probe = roll.dynamics.forward_cached, roll.probe.forward_cached

    def dyn_spy(latents, timesteps, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        dyn_ts.append(timesteps.clone())
        return orig_dyn(latents, timesteps, *args, **kwargs)

    def probe_spy(hidden, *args, with_logits=True, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        logits, kv = orig_probe(hidden, *args, with_logits=with_logits, **kwargs)
        probe_calls.append((hidden.shape[1], with_logits, logits, dyn_ts[-1].clone()))
        return logits, kv

    monkeypatch.setattr(roll.dynamics, "forward_cached", dyn_spy)
    monkeypatch.setattr(roll.probe, "forward_cached", probe_spy)
    ctx, chunk = _inputs()
    res = roll(ctx, chunk, epsilon=0.4, generator=torch.Generator().manual_seed(0))
    read = [c for c in probe_calls if c[1]]
    assert len(read) == H
    for i, (n_frames, _, logits, ts) in enumerate(read):
        assert n_frames == 1 and bool((ts == last_t).all())
        assert torch.equal(res.confidence[:, i], torch.sigmoid(logits[:, 0]))
    assert all(not bool(c[3].any()) for c in probe_calls if not c[1])  # cache fills are clean


def test_kv_cache_matches_recomputation(tiny_dyn_config: DynamicsConfig, randomize) -> None:
    cached = _rollout(tiny_dyn_config, randomize, mode="autoregressive", num_inference_steps=3)
    plain = WorldModelRollout(
        cached.probe,
        cached.dynamics,
        config=RolloutConfig(mode="autoregressive", num_inference_steps=3, kv_cache=False),
    )
    ctx, chunk = _inputs()
    ca = torch.randn(2, K - 1, 4)
    r1 = cached(ctx, chunk, context_actions=ca, generator=torch.Generator().manual_seed(0))
    r2 = plain(ctx, chunk, context_actions=ca, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(r1.latents, r2.latents, atol=1e-5)
    assert torch.allclose(r1.confidence, r2.confidence, atol=1e-6)


def test_autoregressive_older_frames_not_re_estimated(
    tiny_dyn_config: DynamicsConfig, randomize
) -> None:
    """Frame 0's latent and confidence do not change when the rollout continues further."""
    roll = _rollout(tiny_dyn_config, randomize, mode="autoregressive", num_inference_steps=2)
    ctx, chunk = _inputs()
    short = roll(ctx, chunk[:, :1], generator=torch.Generator().manual_seed(0))
    long = roll(ctx, chunk, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(short.latents[:, 0], long.latents[:, 0], atol=1e-6)
    assert torch.allclose(short.confidence[:, 0], long.confidence[:, 0], atol=1e-6)


def test_sliding_window_and_context_actions(tiny_dyn_config: DynamicsConfig, randomize) -> None:
    roll = _rollout(
        tiny_dyn_config,
        randomize,
        mode="autoregressive",
        num_inference_steps=2,
        window=3,
    )
    ctx, chunk = _inputs()
    res = roll(
        ctx,
        chunk,
        context_actions=torch.zeros(2, K - 1, 4),
        generator=torch.Generator().manual_seed(0),
    )
    assert res.latents.shape == (2, H, 4, 8, 8)
    actions, valid = frame_aligned_actions(chunk, K)
    assert torch.equal(actions[:, K - 1 : K - 1 + H], chunk)
    assert valid.tolist()[0] == [0.0] * (K - 1) + [1.0] * H + [0.0]


@pytest.mark.parametrize("mode", ["autoregressive", "joint", "deterministic"])
def test_fsc_probe_rollout(tiny_dyn_config: DynamicsConfig, randomize, mode: str) -> None:
    probe = randomize(C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config, variant="fsc"))).eval()
    roll = WorldModelRollout(
        probe,
        randomize(DynamicsTransformer(tiny_dyn_config)).eval(),
        randomize(DeterministicPredictor(tiny_dyn_config)).eval(),
        config=RolloutConfig(mode=mode, num_inference_steps=2),
    )
    ctx, chunk = _inputs()
    res = roll(ctx, chunk, generator=torch.Generator().manual_seed(0))
    assert res.confidence.shape == (2, H, 4, 8, 8)


class _OracleDynamics(DynamicsTransformer):
    """Returns the exact v for known clean latents ``target [B, F, C, h, w]``: a correct
    sampler (scheduler config, timesteps, per-frame indexing, DDIM update) must then return
    ``target`` exactly, whatever the noise."""

    def __init__(self, cfg: DynamicsConfig, target: torch.Tensor) -> None:
        super().__init__(cfg)
        self.target = target
        self.ab = self.noise_scheduler.alphas_cumprod

    def _v(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        ab = self.ab[t].view(*t.shape, 1, 1, 1)
        noise = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def _outputs(self, x_t, t, start):  # noqa: ANN001, ANN202
        b, f = t.shape
        d = self.config.dim
        v = self._v(x_t, t, self.target[:, start : start + f])
        hidden = torch.zeros(b, f, self.config.tokens_per_frame, d)
        return v, hidden, torch.zeros(b, f, d)

    def forward(self, noisy_latents, timesteps, actions, action_valid=None):  # noqa: ANN001, ANN201
        return self._outputs(noisy_latents, timesteps, 0)

    def forward_cached(self, latents, timesteps, action_cond, start, cache=None):  # noqa: ANN001, ANN201
        v, hidden, cond = self._outputs(latents, timesteps, start)
        kv = (torch.zeros(1, 1, latents.shape[1], 1), torch.zeros(1, 1, latents.shape[1], 1))
        return v, hidden, cond, [kv] * self.config.depth


@pytest.mark.parametrize(
    ("mode", "cache"), [("joint", True), ("autoregressive", True), ("autoregressive", False)]
)
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_sampler_recovers_oracle_target(
    tiny_dyn_config: DynamicsConfig, mode: str, cache: bool, steps: int
) -> None:
    gen = torch.Generator().manual_seed(5)
    target = torch.randn(2, K + H, 4, 8, 8, generator=gen)
    dyn = _OracleDynamics(tiny_dyn_config, target)
    roll = WorldModelRollout(
        C3Probe(ProbeConfig.from_dynamics(tiny_dyn_config)),
        dyn,
        config=RolloutConfig(mode=mode, num_inference_steps=steps, kv_cache=cache),
    )
    res = roll(target[:, :K], torch.zeros(2, H, 4), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(res.latents, target[:, K:], atol=1e-3)
