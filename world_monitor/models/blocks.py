"""Transformer building blocks shared by the dynamics model and the C3 probe.

Kept in one place so the probe's spatio-temporal block is *the same* computation as the backbone's
(the paper's probe is "one more block of the same kind" reading the backbone's last tokens).
Everything here is plain tensor ops + ``scaled_dot_product_attention`` so that it exports to ONNX.

Token layout everywhere: ``[B, F, N, D]`` (batch, frames, tokens per frame, width) with a
per-frame condition vector ``c: [B, F, D]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "KV",
    "FinalLayer",
    "SpatioTemporalBlock",
    "patchify",
    "sinusoidal_embedding",
    "unpatchify",
]


def sinusoidal_embedding(
    values: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """Sin/cos features of scalar values (timesteps, eps*scale): ``[...] -> [..., dim]``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half
    )
    args = values.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ScalarEmbedding(nn.Module):
    """Sinusoidal features -> 2-layer MLP; used for diffusion timesteps and the probe's eps."""

    def __init__(self, dim: int, freq_dim: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(values * self.scale, self.freq_dim))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


KV = tuple[torch.Tensor, torch.Tensor]
"""Keys and values of one attention layer, each ``[B', heads, L, dim/heads]``."""


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of ``[B', L, D]``.

    With ``past`` (keys/values of earlier positions) the queries of ``x`` attend to
    ``past + x``; used by the frame-by-frame rollout's KV cache, where ``x`` is the newest frame
    so no mask is needed. ``forward_kv`` also returns this call's own keys/values.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward_kv(
        self, x: torch.Tensor, causal: bool = False, past: KV | None = None
    ) -> tuple[torch.Tensor, KV]:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if past is not None:
            if causal and n > 1:
                raise ValueError("a KV cache only supports one new position per call")
            k_all, v_all = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            out = F.scaled_dot_product_attention(q, k_all, v_all)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, d)), (k, v)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        return self.forward_kv(x, causal)[0]


class SpatioTemporalBlock(nn.Module):
    """Factorised block: spatial attention (within a frame), causal temporal attention (same
    token position across frames, frame t sees frames <= t), MLP; each with adaLN-Zero.

    Why factorised: full attention over F*N tokens costs O((FN)^2); spatial+temporal costs
    O(F N^2 + N F^2), the difference between fitting and missing the CPU latency budget.
    Why causal: a frame's prediction must not depend on frames after it, so frame-by-frame
    rollout with clean context is consistent with training and later (not yet generated) frames
    can be padded with anything.
    Why adaLN-Zero: the modulation (and so every residual gate) starts at zero, so each block is the
    identity at init, which is what makes DiTs train stably from scratch.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.spatial = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.temporal = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.forward_kv(x, c)[0]

    def forward_kv(
        self, x: torch.Tensor, c: torch.Tensor, past: KV | None = None
    ) -> tuple[torch.Tensor, KV]:
        """Like ``forward`` but also returns the temporal attention's keys/values of ``x``'s
        frames; with ``past`` (those of all earlier frames) ``x`` must be one frame, the next."""
        b, f, n, d = x.shape
        mods = self.ada(c).unsqueeze(2).chunk(9, dim=-1)  # each [B, F, 1, D]
        h = _modulate(self.norm1(x), mods[0], mods[1])
        x = x + mods[2] * self.spatial(h.reshape(b * f, n, d)).reshape(b, f, n, d)
        h = _modulate(self.norm2(x), mods[3], mods[4])
        h = h.permute(0, 2, 1, 3).reshape(b * n, f, d)
        h, kv = self.temporal.forward_kv(h, causal=True, past=past)
        h = h.reshape(b, n, f, d).permute(0, 2, 1, 3)
        x = x + mods[5] * h
        h = _modulate(self.norm3(x), mods[6], mods[7])
        return x + mods[8] * self.mlp(h), kv


class FinalLayer(nn.Module):
    """adaLN (shift, scale) + linear to ``out_dim`` per token; all zero-initialised, so the
    output is exactly 0 at init (v = 0 for the denoiser, logit 0 -> q = 0.5 for the probe)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)
        for layer in (self.ada[1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).unsqueeze(2).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm(x), shift, scale))


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, F, C, h, w] -> [B, F, (h/p)(w/p), p*p*C]`` (token order: row-major patches)."""
    b, f, c, h, w = x.shape
    x = x.reshape(b, f, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 4, 6, 2)
    return x.reshape(b, f, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, F, N, p*p*C] -> [B, F, C, h, w]``."""
    b, f = tokens.shape[:2]
    x = tokens.reshape(b, f, h // p, w // p, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)
    return x.reshape(b, f, c, h, w)
