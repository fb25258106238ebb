"""The C3 probe: dense, calibrated per-latent-element confidence ``q(eps) = P(|x_hat - x*| <= eps)``.

Reads the backbone's last hidden tokens ``[B, F, N, D]`` and per-frame conditioning ``[B, F, D]``
**detached** (stop-gradient: training the probe must never change the world model - the paper
found this costs nothing and it keeps the world model's quality independent of the monitor).
One spatio-temporal block (same kind as the backbone's) + an adaLN final layer emit one logit per
latent element (``p*p*C`` per token, unpatchified to ``[B, F, C, h, w]``), so the confidence map
has exactly the latent's shape. The final layer is zero-initialised: every logit is exactly 0
and ``q = sigmoid(0) = 0.5`` at init ("unsure"), the neutral start for a proper scoring rule.

Variants (``ProbeConfig.variant``):

* ``"cs_bc"`` - the paper's headline: eps is an input, ``sinusoidal(eps * eps_scale) -> MLP`` is
  added to the conditioning, one eps per (sample, frame); train with BCE/Brier on eps drawn from
  a grid over [0.1, 1.0].
* ``"fsc"`` - one fixed eps (``fixed_epsilon``, recorded for the bundle), no eps input.

Output is **logits**; apply ``torch.sigmoid`` (or use :meth:`C3Probe.confidence`) for q.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from world_monitor.models.blocks import (
    KV,
    FinalLayer,
    ScalarEmbedding,
    SpatioTemporalBlock,
    unpatchify,
)
from world_monitor.models.dynamics import DynamicsConfig

__all__ = ["PROBE_VARIANTS", "C3Probe", "ProbeConfig"]

PROBE_VARIANTS = ("cs_bc", "fsc")


@dataclass
class ProbeConfig:
    """Hyper-parameters of :class:`C3Probe`; geometry must match the backbone's."""

    variant: str = "cs_bc"
    dim: int = 128
    heads: int = 4
    mlp_ratio: float = 4.0
    latent_channels: int = 4
    latent_size: tuple[int, int] = (16, 16)
    patch_size: int = 2
    fixed_epsilon: float = 0.5
    eps_scale: float = 1000.0

    @classmethod
    def from_dynamics(cls, dyn: DynamicsConfig, **overrides: Any) -> ProbeConfig:
        """A probe config whose geometry matches ``dyn`` (the usual way to build one)."""
        base = {
            "dim": dyn.dim,
            "heads": dyn.heads,
            "mlp_ratio": dyn.mlp_ratio,
            "latent_channels": dyn.latent_channels,
            "latent_size": tuple(dyn.latent_size),
            "patch_size": dyn.patch_size,
        }
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latent_size"] = list(self.latent_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeConfig:
        d = dict(d)
        if "latent_size" in d:
            d["latent_size"] = tuple(d["latent_size"])
        return cls(**d)


class C3Probe(nn.Module):
    """``(hidden [B,F,N,D], cond [B,F,D], epsilon [B,F] | None) -> logits [B,F,C,h,w]``."""

    def __init__(self, config: ProbeConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ProbeConfig()
        if c.variant not in PROBE_VARIANTS:
            raise ValueError(f"variant must be one of {PROBE_VARIANTS}, got {c.variant!r}")
        self.eps_embed = ScalarEmbedding(c.dim, scale=c.eps_scale) if c.variant == "cs_bc" else None
        self.block = SpatioTemporalBlock(c.dim, c.heads, c.mlp_ratio)
        self.final = FinalLayer(c.dim, c.patch_size**2 * c.latent_channels)

    @property
    def needs_epsilon(self) -> bool:
        return self.eps_embed is not None

    def _epsilon(
        self, epsilon: torch.Tensor | float, b: int, f: int, ref: torch.Tensor
    ) -> torch.Tensor:
        # a tensor must stay a tensor (not torch.as_tensor) so ONNX tracing keeps eps an input
        if isinstance(epsilon, torch.Tensor):
            eps = epsilon.to(dtype=ref.dtype, device=ref.device)
        else:
            eps = torch.full((), float(epsilon), dtype=ref.dtype, device=ref.device)
        if eps.dim() == 1:  # one eps per sample
            eps = eps.unsqueeze(1)
        return eps.expand(b, f)

    def _condition(
        self, cond: torch.Tensor, epsilon: torch.Tensor | float | None, b: int, f: int
    ) -> torch.Tensor:
        if self.eps_embed is not None:
            if epsilon is None:
                raise ValueError("the cs_bc probe needs epsilon")
            return cond + self.eps_embed(self._epsilon(epsilon, b, f, cond))
        if epsilon is not None:
            raise ValueError("the fsc probe has a fixed epsilon; pass epsilon=None")
        return cond

    def _logits(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = self.config
        return unpatchify(self.final(x, cond), c.patch_size, c.latent_channels, *c.latent_size)

    def forward(
        self,
        hidden: torch.Tensor,
        cond: torch.Tensor,
        epsilon: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Per-element logits. ``epsilon``: scalar, ``[B]`` or ``[B, F]`` (CS-BC only)."""
        hidden, cond = hidden.detach(), cond.detach()
        b, f = hidden.shape[:2]
        cond = self._condition(cond, epsilon, b, f)
        return self._logits(self.block(hidden, cond), cond)

    def forward_cached(
        self,
        hidden: torch.Tensor,
        cond: torch.Tensor,
        epsilon: torch.Tensor | float | None = None,
        cache: KV | None = None,
        with_logits: bool = True,
    ) -> tuple[torch.Tensor | None, KV]:
        """Incremental variant for frame-by-frame rollouts (see
        ``DynamicsTransformer.forward_cached``): ``cache`` holds the block's temporal keys/values
        of all earlier frames; returns ``(logits or None, this call's keys/values)``.
        ``with_logits=False`` only refreshes the cache (a finished frame's clean pass), so no
        confidence is ever produced for an older frame."""
        hidden, cond = hidden.detach(), cond.detach()
        b, f = hidden.shape[:2]
        cond = self._condition(cond, epsilon, b, f)
        x, kv = self.block.forward_kv(hidden, cond, cache)
        return (self._logits(x, cond) if with_logits else None), kv

    def confidence(
        self,
        hidden: torch.Tensor,
        cond: torch.Tensor,
        epsilon: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """``q = sigmoid(logits)`` in [0, 1], same shape as the latents."""
        return torch.sigmoid(self.forward(hidden, cond, epsilon))
