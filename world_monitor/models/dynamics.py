"""Action-conditioned latent dynamics: a small diffusion transformer (v-prediction) and a
deterministic one-pass predictor built on the same backbone.

Design (C3 paper, docs/method.md section 1):

* Latent frames ``[B, F, C, h, w]`` are cut into ``p x p`` patches -> ``N = (h/p)(w/p)`` tokens
  per frame, plus learned spatial and temporal position embeddings.
* Factorised spatial + causal-temporal attention blocks with adaLN-Zero; each frame's
  condition vector is ``timestep_embedding(t_f) + action_embedding(a_{f-1})``.
* **Action alignment.** The data contract says ``actions[:, t]`` is executed between frame t and
  t+1, so frame ``f`` is conditioned on ``actions[:, f-1]``. The model shifts internally: callers
  pass actions aligned with frames exactly as the dataset stores them. Frame 0 (and any frame
  whose ``action_valid`` is 0, e.g. context at an episode start or when past actions are unknown)
  gets a learned "no action" embedding instead. ``actions[:, F-1]`` is never used.
* **Diffusion forcing.** Every frame carries its own integer timestep, so training draws an
  independent noise level per frame and inference passes clean context frames with ``t = 0``.
* The noise schedule is a ``diffusers.DDIMScheduler`` with 1000 train steps, the cosine
  (``squaredcos_cap_v2``) beta schedule (keeps signal at mid timesteps for small latents, where
  the SD "scaled_linear" schedule destroys 16x16 latents too early), ``v_prediction``, no sample
  clipping (standardised latents are not bounded by 1), ``timestep_spacing="trailing"`` so that
  even 4 DDIM steps start at t=999 (pure noise), and ``set_alpha_to_one=True`` so the last step
  lands on the x0 estimate.

The forward returns ``(v_pred, hidden, cond)``: the last hidden tokens ``[B, F, N, D]`` (before the
final layer) and the per-frame conditioning ``[B, F, D]`` for the C3 probe, which must read them
detached (the probe does that itself).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler
from torch import nn

from world_monitor.models.blocks import (
    KV,
    FinalLayer,
    ScalarEmbedding,
    SpatioTemporalBlock,
    patchify,
    unpatchify,
)

__all__ = [
    "DeterministicPredictor",
    "DynamicsConfig",
    "DynamicsTransformer",
    "make_scheduler",
    "sample_diffusion_forcing_timesteps",
    "training_targets",
]

logger = logging.getLogger(__name__)


@dataclass
class DynamicsConfig:
    """Hyper-parameters of the dynamics backbone (also the deterministic predictor's)."""

    latent_channels: int = 4
    latent_size: tuple[int, int] = (16, 16)
    patch_size: int = 2
    action_dim: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    max_frames: int = 16
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.latent_size
        return (h // self.patch_size) * (w // self.patch_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latent_size"] = list(self.latent_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DynamicsConfig:
        d = dict(d)
        if "latent_size" in d:
            d["latent_size"] = tuple(d["latent_size"])
        return cls(**d)


def make_scheduler(config: DynamicsConfig) -> DDIMScheduler:
    """The DDIM scheduler used for both training targets and sampling (see module docstring)."""
    return DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )


def training_targets(
    scheduler: DDIMScheduler,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy inputs and v targets for per-frame timesteps (diffusion forcing).

    ``x0``/``noise``: ``[B, F, C, h, w]``; ``timesteps``: ``[B, F]`` int. diffusers' ``add_noise``
    and ``get_velocity`` broadcast one timestep per leading *sample*, so frames are folded into
    the batch dim. Returns ``(noisy [B,F,C,h,w], v_target [B,F,C,h,w])`` with
    ``v = sqrt(a_t)*noise - sqrt(1-a_t)*x0``.

    Convention: frames with ``t = 0`` are passed **exactly clean** (``noisy = x0``), because at
    inference context frames are clean latents tagged ``t = 0``; the scheduler's own ``t = 0``
    would still add noise of std ~0.006 (cosine schedule), a small train/test mismatch we avoid.
    Whether the loss counts on ``t = 0`` frames is the trainer's choice (usually not).
    """
    b, f = timesteps.shape
    flat = x0.reshape(b * f, *x0.shape[2:])
    n = noise.reshape(b * f, *noise.shape[2:])
    t = timesteps.reshape(-1).long().to(x0.device)
    noisy = scheduler.add_noise(flat, n, t).reshape(x0.shape)
    v = scheduler.get_velocity(flat, n, t).reshape(x0.shape)
    clean = (timesteps == 0).to(x0.device).view(b, f, *([1] * (x0.dim() - 2)))
    return torch.where(clean, x0, noisy), v


def sample_diffusion_forcing_timesteps(
    batch: int,
    frames: int,
    num_train_timesteps: int = 1000,
    num_clean_context: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Independent uniform timestep per (sample, frame) ``[B, F]``; the first
    ``num_clean_context`` frames get ``t = 0`` (clean context, as at inference)."""
    t = torch.randint(0, num_train_timesteps, (batch, frames), generator=generator)
    t[:, :num_clean_context] = 0
    return t


class DynamicsTransformer(nn.Module):
    """Latent video DiT: ``(noisy [B,F,C,h,w], t [B,F], actions [B,F,A]) -> (out, hidden, cond)``.

    ``out`` is the v-prediction for the diffusion model; the deterministic predictor reuses the
    class and reads ``out`` as a latent residual.
    """

    def __init__(self, config: DynamicsConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DynamicsConfig()
        h, w = c.latent_size
        if h % c.patch_size or w % c.patch_size:
            raise ValueError("latent_size must be divisible by patch_size")
        patch_dim = c.patch_size**2 * c.latent_channels
        self.patch_embed = nn.Linear(patch_dim, c.dim)
        self.pos_spatial = nn.Parameter(torch.randn(c.tokens_per_frame, c.dim) * 0.02)
        self.pos_temporal = nn.Parameter(torch.randn(c.max_frames, c.dim) * 0.02)
        self.t_embed = ScalarEmbedding(c.dim)
        self.a_embed = nn.Sequential(
            nn.Linear(c.action_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim)
        )
        self.null_action = nn.Parameter(torch.zeros(c.dim))
        self.blocks = nn.ModuleList(
            SpatioTemporalBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.depth)
        )
        self.final = FinalLayer(c.dim, patch_dim)
        # not a submodule/buffer: only alphas_cumprod is read, rebuilt from the config on load
        self.noise_scheduler = make_scheduler(c)

    def training_targets(
        self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noisy, v_target)`` for this model's schedule; see :func:`training_targets`."""
        return training_targets(self.noise_scheduler, x0, noise, timesteps)

    def action_condition(
        self, actions: torch.Tensor, action_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Action part of each frame's condition ``[B, F, D]``: the embedding of the action that
        led *into* the frame (``actions[:, f-1]``), or the learned null embedding where none."""
        b, f = actions.shape[:2]
        prev = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
        valid = torch.ones(b, f, dtype=actions.dtype, device=actions.device)
        if action_valid is not None:
            valid = valid * action_valid.to(actions.dtype)
        prev_valid = torch.cat([torch.zeros_like(valid[:, :1]), valid[:, :-1]], dim=1).unsqueeze(-1)
        return prev_valid * self.a_embed(prev) + (1 - prev_valid) * self.null_action

    def condition(
        self,
        timesteps: torch.Tensor,
        actions: torch.Tensor,
        action_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-frame condition ``[B, F, D]`` = t-embedding + :meth:`action_condition`."""
        return self.t_embed(timesteps.float()) + self.action_condition(actions, action_valid)

    def _run(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        start: int,
        cache: list[KV] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[KV]]:
        c = self.config
        f = latents.shape[1]
        if start + f > c.max_frames:
            raise ValueError(f"{start + f} frames > max_frames {c.max_frames}")
        x = self.patch_embed(patchify(latents, c.patch_size))
        x = x + self.pos_spatial + self.pos_temporal[start : start + f].unsqueeze(1)
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block.forward_kv(x, cond, None if cache is None else cache[i])
            kvs.append(kv)
        out = unpatchify(self.final(x, cond), c.patch_size, c.latent_channels, *c.latent_size)
        return out, x, kvs

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        actions: torch.Tensor,
        action_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(v_pred [B,F,C,h,w], hidden [B,F,N,D], cond [B,F,D])``.

        ``action_valid`` ``[B, F]`` (1 = known) marks which stored actions exist; default all.
        """
        cond = self.condition(timesteps, actions, action_valid)
        out, hidden, _ = self._run(noisy_latents, cond, 0, None)
        return out, hidden, cond

    def forward_cached(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        action_cond: torch.Tensor,
        start: int,
        cache: list[KV] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[KV]]:
        """Incremental forward for frame-by-frame sampling with a per-layer KV cache.

        ``latents [B,f,...]``/``timesteps [B,f]`` are frames ``start .. start+f-1`` of the
        sequence; ``action_cond`` is :meth:`action_condition` of the *whole* sequence (so the
        action shift is the same as in ``forward``); ``cache`` holds the temporal keys/values of
        frames ``0 .. start-1`` (``None`` to prefill from frame 0, then ``f`` may be > 1; with a
        cache ``f`` must be 1). Returns ``(out, hidden, cond, kvs)`` for the processed frames;
        append ``kvs`` to the cache once a frame is final. Exactly equal (up to float error) to
        ``forward`` on the full prefix, because temporal attention is causal.
        """
        f = latents.shape[1]
        cond = self.t_embed(timesteps.float()) + action_cond[:, start : start + f]
        out, hidden, kvs = self._run(latents, cond, start, cache)
        return out, hidden, cond, kvs


class DeterministicPredictor(nn.Module):
    """Fast variant: context latents + actions -> all future latents in one pass, no sampling.

    Same backbone; future frames enter as zero latents tagged with the maximal timestep (the
    backbone's "know nothing about this frame" input, as in diffusion forcing), context frames
    with ``t = 0``. The output is read as a residual on the last context latent, so the untrained
    (zero-init) model predicts "nothing moves" - a sane baseline and an easier target.
    Train with MSE between ``future`` and the encoded real future frames.
    """

    def __init__(self, config: DynamicsConfig | None = None) -> None:
        super().__init__()
        self.config = config or DynamicsConfig()
        self.backbone = DynamicsTransformer(self.config)

    def forward(
        self,
        context_latents: torch.Tensor,
        actions: torch.Tensor,
        action_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``context_latents [B,k,C,h,w]``, ``actions [B,k+H,A]`` (frame-aligned, as in the
        dataset) -> ``(future [B,H,C,h,w], hidden [B,k+H,N,D], cond [B,k+H,D])``."""
        b, k = context_latents.shape[:2]
        total = actions.shape[1]
        horizon = total - k
        zeros = context_latents.new_zeros(b, horizon, *context_latents.shape[2:])
        latents = torch.cat([context_latents, zeros], dim=1)
        t = torch.zeros(b, total, dtype=torch.long, device=latents.device)
        t[:, k:] = self.config.num_train_timesteps - 1
        out, hidden, cond = self.backbone(latents, t, actions, action_valid)
        future = context_latents[:, -1:] + out[:, k:]
        return future, hidden, cond
