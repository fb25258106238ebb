"""Stage 1: train the frame VAE on train-split frames; report held-out PSNR on the val split.

Why a plain MSE + tiny KL: the dynamics model consumes the posterior *mean* (standardised later),
so the VAE only needs faithful reconstructions and a mildly regularised latent; a large KL weight
would blur the frames the monitor's heatmaps are decoded into.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from world_monitor.data.dataset import EpisodeDataset
from world_monitor.data.normalize import frames_to_float
from world_monitor.models.vae import FrameVAE
from world_monitor.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_generator,
)
from world_monitor.training.common import MetricsLog, TrainingError, lr_at, set_lr

__all__ = ["FrameSampler", "VAETrainConfig", "psnr", "train_vae", "vae_psnr"]

logger = logging.getLogger(__name__)


@dataclass
class VAETrainConfig:
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    kl_weight: float = 1e-6
    grad_clip: float = 1.0
    eval_every: int = 500
    val_frames: int = 256
    ckpt_every: int = 500
    log_every: int = 50

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAETrainConfig:
        return cls(**d)


class FrameSampler:
    """Random single frames of a (sub)dataset, gathered from the memory maps on demand."""

    def __init__(self, dataset: EpisodeDataset) -> None:
        if len(dataset) == 0:
            raise TrainingError(f"{dataset.root}: no episodes to sample frames from")
        self.dataset = dataset
        lengths = np.array([r.length for r in dataset.index], dtype=np.int64)
        self.episode = np.repeat(np.arange(len(lengths)), lengths)
        self.t = np.concatenate([np.arange(n) for n in lengths])

    def __len__(self) -> int:
        return int(self.episode.shape[0])

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """Frames ``[N, 3, H, W]`` in [-1, 1] for flat frame indices."""
        frames = np.stack(
            [self.dataset.window(int(self.episode[i]), int(self.t[i]), 1)[0][0] for i in idx]
        )
        return torch.from_numpy(frames_to_float(frames)).permute(0, 3, 1, 2).contiguous()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self), (n,), generator=generator).numpy()
        return self.gather(idx)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image ``[..., 3, H, W]`` for images in [-1, 1] (peak-to-peak 2)."""
    mse = ((pred.clamp(-1, 1) - target) ** 2).flatten(-3).mean(-1).clamp_min(1e-10)
    return 10.0 * torch.log10(4.0 / mse)


@torch.no_grad()
def vae_psnr(vae: FrameVAE, frames: torch.Tensor, batch_size: int = 128) -> float:
    """Mean reconstruction PSNR (dB) of ``frames`` ``[N, 3, H, W]``."""
    vae.eval()
    device = next(vae.parameters()).device
    vals = []
    for i in range(0, len(frames), batch_size):
        x = frames[i : i + batch_size].to(device)
        vals.append(psnr(vae.decode_raw(vae.encode_distribution(x)[0]), x).cpu())
    return float(torch.cat(vals).mean())


def _val_frames(dataset: EpisodeDataset, n: int, seed: int) -> torch.Tensor | None:
    val = dataset.select(split="val", shift=None)
    if len(val) == 0:
        return None
    sampler = FrameSampler(val)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(sampler), size=min(n, len(sampler)), replace=False)
    return sampler.gather(np.sort(idx))


def train_vae(
    vae: FrameVAE,
    dataset: EpisodeDataset,
    cfg: VAETrainConfig,
    *,
    seed: int,
    ckpt_dir: Path,
    metrics: MetricsLog,
    progress: bool = True,
) -> dict[str, float]:
    """Train ``vae`` in place on train-split, in-distribution frames (resumes from ``ckpt_dir``).

    Returns the final metrics (``val_psnr`` on held-out val frames, throughput). Runs on the
    device of ``vae``; random draws are made on the CPU (so CPU and GPU runs see the same batches).
    """
    device = next(vae.parameters()).device
    train = FrameSampler(dataset.select(split="train", shift=None))
    val = _val_frames(dataset, cfg.val_frames, seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    start = 0
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        ck = load_checkpoint(last, {"vae": vae}, {"vae": opt})
        start = ck.step
        logger.info("VAE: resumed from %s (step %d)", last, start)
    result: dict[str, float] = {}
    bar = tqdm(
        range(start, cfg.steps),
        desc="vae",
        disable=not progress,
        unit="step",
        initial=start,
        total=cfg.steps,
    )
    t0 = time.perf_counter()
    samples = 0
    for step in bar:
        vae.train()
        set_lr(opt, lr_at(step, base=cfg.lr, warmup=cfg.warmup, total=cfg.steps))
        x = train.sample(cfg.batch_size, step_generator(seed, step, 1)).to(device)
        g = step_generator(seed, step, 2)
        mean, logvar = vae.encode_distribution(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g).to(device)
        recon = vae.decode_raw(z)
        rec = torch.mean((recon - x) ** 2)
        kl = 0.5 * torch.mean(mean**2 + logvar.exp() - 1.0 - logvar)
        loss = rec + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
        opt.step()
        samples += cfg.batch_size
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            rate = samples / max(time.perf_counter() - t0, 1e-9)
            train_psnr = float(10 * math.log10(4.0 / max(rec.item(), 1e-10)))
            metrics.write(
                "vae",
                done,
                {
                    "loss": loss.item(),
                    "mse": rec.item(),
                    "kl": kl.item(),
                    "train_psnr": train_psnr,
                    "frames_per_s": rate,
                },
            )
            bar.set_postfix(mse=f"{rec.item():.4f}", psnr=f"{train_psnr:.1f}")
            result["frames_per_s"] = rate
        if val is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            result["val_psnr"] = vae_psnr(vae, val)
            metrics.write("vae", done, {"val_psnr": result["val_psnr"]})
            logger.info("VAE step %d: val PSNR %.2f dB", done, result["val_psnr"])
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save_checkpoint(ckpt_dir, done, {"vae": vae}, {"vae": opt}, stage="vae")
    if "val_psnr" not in result and val is not None:
        result["val_psnr"] = vae_psnr(vae, val)
    vae.eval()
    return result
