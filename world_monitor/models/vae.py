"""Frame VAE: ``pixel_unshuffle`` -> small ``diffusers.AutoencoderKL`` -> ``pixel_shuffle``.

Why this shape: a plain AutoencoderKL at 64x64 is FLOP-bound on a 2-core CPU (~12 ms to encode
one frame, docs/measurements.md). Folding 4x4 pixel blocks into channels first
(``pixel_unshuffle(4)``: 3x64x64 -> 48x16x16) lets a one-block AutoencoderKL work at 16x16
directly, which trains ~10x faster and exports to ONNX unchanged.

Latent shape choice (measured 2026-11-21 on the shared 2-core box, eager torch, 1 thread,
batch 1, median of 30 calls; ``python -m world_monitor.models.vae`` reprints the VAE part; the
step column is one default denoiser+C3-probe pass over k+H = 10 frames, dim 128, depth 4):

==========================  ======  ======  ======  ===============  ==============
config                      params  enc ms  dec ms  tokens/frame     step ms (F=10)
==========================  ======  ======  ======  ===============  ==============
unshuffle 4 -> 4x16x16      0.62M   2.6     3.3     64 (patch 2)     29.9
unshuffle 8 -> 8x8x8        0.79M   1.2     1.3     64 (patch 1)     29.2
unshuffle 8 -> 8x8x8        0.79M   1.2     1.3     16 (patch 2)      8.3
==========================  ======  ======  ======  ===============  ==============

Chosen default: **4x16x16** (unshuffle 4, one block, 64 channels) with dynamics patch 2. The VAE
costs a few ms either way (< 1.2 ms per frame in ORT), so the dynamics token count decides:
4x16x16/p2 and 8x8x8/p1 cost the same (64 tokens/frame), and 4x16x16 keeps a 16x16 confidence
map (finer heatmaps/localisation boxes) and the reconstruction quality the feasibility study
measured (28 dB in 8 min). With it, the latency-oriented runtime paths fit 100 ms in ORT
(joint K=4: 4 passes of ~13-18 ms; deterministic: 1 pass); the paper's frame-by-frame mode
(H*K passes) does not on this CPU with any of these shapes. If the budget is missed,
8x8x8 with patch 2 (16 tokens/frame, ~3.5x cheaper step) is a config change
(``VAEConfig(unshuffle=8, latent_channels=8)``, ``DynamicsConfig(latent_channels=8,
latent_size=(8, 8))``) at the price of a coarser 8x8 confidence map.

Latents handed to the dynamics model are the posterior **mean** (deterministic, so the same frame
always maps to the same latent and the C3 labels ``|x_hat - x*| <= eps`` are well defined),
standardised per channel with stored ``latent_mean``/``latent_std`` buffers so that one eps grid
means the same thing in every channel.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models import AutoencoderKL
from torch import nn

__all__ = ["FrameVAE", "VAEConfig"]

logger = logging.getLogger(__name__)


@dataclass
class VAEConfig:
    """Hyper-parameters of :class:`FrameVAE`; plain types so it round-trips through dicts/YAML."""

    image_size: int = 64
    image_channels: int = 3
    unshuffle: int = 4
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    mid_block_add_attention: bool = True

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent; each extra block halves the resolution."""
        side = self.image_size // self.unshuffle // 2 ** (len(self.block_out_channels) - 1)
        return (self.latent_channels, side, side)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        d = dict(d)
        if "block_out_channels" in d:
            d["block_out_channels"] = tuple(d["block_out_channels"])
        return cls(**d)


class FrameVAE(nn.Module):
    """Encodes frames in [-1, 1] to standardised latents and back.

    Accepts any number of leading dims (``[..., 3, H, W]``), so ``[B, F, 3, H, W]`` clips and
    single ``[3, H, W]`` frames both work.
    """

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        c = self.config
        if c.image_size % c.unshuffle:
            raise ValueError(f"image_size {c.image_size} not divisible by unshuffle {c.unshuffle}")
        n = len(c.block_out_channels)
        packed = c.image_channels * c.unshuffle**2
        self.ae = AutoencoderKL(
            in_channels=packed,
            out_channels=packed,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(c.block_out_channels),
            layers_per_block=c.layers_per_block,
            latent_channels=c.latent_channels,
            norm_num_groups=c.norm_num_groups,
            sample_size=c.image_size // c.unshuffle,
            mid_block_add_attention=c.mid_block_add_attention,
        )
        self.register_buffer("latent_mean", torch.zeros(c.latent_channels))
        self.register_buffer("latent_std", torch.ones(c.latent_channels))

    # ----------------------------------------------------------------- standardisation
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-channel statistics of raw posterior means (computed on training frames)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.config.latent_channels or std.numel() != mean.numel():
            raise ValueError("latent stats must have one value per latent channel")
        if bool((std <= 0).any()):
            raise ValueError("latent std must be positive")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)

    @staticmethod
    def channel_stats(raw_latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean/std of raw latents ``[..., C, h, w]`` (input to set_latent_stats)."""
        c = raw_latents.shape[-3]
        flat = raw_latents.movedim(-3, 0).reshape(c, -1)
        return flat.mean(1), flat.std(1).clamp_min(1e-6)

    def _view(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, 1, 1)

    # ----------------------------------------------------------------- raw (training) API
    def encode_distribution(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unstandardised posterior ``(mean, logvar)``, each ``[..., C, h, w]`` (VAE training)."""
        lead = frames.shape[:-3]
        x = F.pixel_unshuffle(frames.reshape(-1, *frames.shape[-3:]), self.config.unshuffle)
        post = self.ae.encode(x).latent_dist
        mean, logvar = post.mean, post.logvar
        return mean.reshape(*lead, *mean.shape[1:]), logvar.reshape(*lead, *logvar.shape[1:])

    def decode_raw(self, raw_latents: torch.Tensor) -> torch.Tensor:
        """Decode unstandardised latents ``[..., C, h, w]`` to frames ``[..., 3, H, W]``."""
        lead = raw_latents.shape[:-3]
        z = raw_latents.reshape(-1, *raw_latents.shape[-3:])
        x = F.pixel_shuffle(self.ae.decode(z).sample, self.config.unshuffle)
        return x.reshape(*lead, *x.shape[1:])

    # ----------------------------------------------------------------- inference API
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[..., 3, H, W]`` in [-1, 1] -> standardised posterior-mean latents."""
        mean, _ = self.encode_distribution(frames)
        return (mean - self._view(self.latent_mean)) / self._view(self.latent_std)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Standardised latents ``[..., C, h, w]`` -> frames ``[..., 3, H, W]`` (not clamped)."""
        raw = latents * self._view(self.latent_std) + self._view(self.latent_mean)
        return self.decode_raw(raw)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (encode mean -> decode)."""
        return self.decode(self.encode(frames))


def _measure() -> None:
    """Print params and encode/decode ms for the candidate latent shapes (module docstring)."""
    import time

    torch.set_num_threads(1)
    candidates = {
        "unshuffle4 4x16x16": VAEConfig(),
        "unshuffle8 8x8x8": VAEConfig(unshuffle=8, latent_channels=8),
    }
    for name, cfg in candidates.items():
        vae = FrameVAE(cfg).eval()
        x = torch.rand(1, 3, cfg.image_size, cfg.image_size) * 2 - 1
        with torch.no_grad():
            z = vae.encode(x)
            times = {}
            for label, fn, arg in (
                ("encode", vae.encode, x),
                ("decode", vae.decode, z),
            ):
                for _ in range(5):
                    fn(arg)
                ts = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    fn(arg)
                    ts.append((time.perf_counter() - t0) * 1e3)
                times[label] = sorted(ts)[len(ts) // 2]
        n = sum(p.numel() for p in vae.parameters())
        logger.info(
            "%s latent=%s params=%.2fM encode=%.2fms decode=%.2fms",
            name,
            cfg.latent_shape,
            n / 1e6,
            times["encode"],
            times["decode"],
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _measure()
