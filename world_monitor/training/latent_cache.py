"""Stage 2: latent statistics and a cache of standardised latents + normalised actions per split.

Why cache: the dynamics stage samples thousands of windows per minute; re-encoding frames every
step would cost more than the dynamics model itself on a CPU. Each needed split is encoded once
into one contiguous ``.npy`` (memory-mappable, no pickle) plus a JSON index of episode offsets.
The cache records a hash of the VAE weights and of the normaliser, so a cache produced by another
VAE is recomputed instead of silently reused.

Layout under ``RUN/latents``::

    <split>.npy            float32 [total_frames, C, h, w]   standardised posterior means
    <split>_actions.npy    float32 [total_frames, A]         normalised actions
    <split>.json           {"vae_hash", "normalizer_hash", "episodes": [{"id", "offset", "length"}]}
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from world_monitor.data.dataset import EpisodeDataset
from world_monitor.data.normalize import ActionNormalizer, frames_to_float
from world_monitor.models.vae import FrameVAE

__all__ = [
    "LatentSplit",
    "compute_latent_stats",
    "encode_frames",
    "ensure_latent_cache",
    "module_hash",
]

logger = logging.getLogger(__name__)


def module_hash(module: torch.nn.Module) -> str:
    """SHA-256 of a module's tensors (order-stable): identifies the weights a cache came from."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_frames(
    vae: FrameVAE, frames: np.ndarray, *, raw: bool = False, batch_size: int = 256
) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` -> latents ``[N, C, h, w]`` (standardised unless ``raw``)."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(frames), batch_size):
        x = torch.from_numpy(frames_to_float(np.asarray(frames[i : i + batch_size])))
        x = x.permute(0, 3, 1, 2).to(device)
        z = vae.encode_distribution(x)[0] if raw else vae.encode(x)
        out.append(z.cpu().numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, *vae.config.latent_shape), np.float32)


@torch.no_grad()
def compute_latent_stats(
    vae: FrameVAE,
    dataset: EpisodeDataset,
    *,
    max_frames: int = 20000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std of raw posterior means over (a seeded subset of) train frames."""
    train = dataset.select(split="train", shift=None)
    n_ep = len(train)
    per_ep = max(1, max_frames // max(n_ep, 1))
    rng = np.random.default_rng(seed)
    chunks = []
    for i in tqdm(range(n_ep), desc="latent stats", disable=not progress, unit="ep"):
        ep = train[i]
        idx = np.sort(rng.choice(ep.length, size=min(per_ep, ep.length), replace=False))
        chunks.append(encode_frames(vae, np.asarray(ep.frames[idx]), raw=True))
    raw = torch.from_numpy(np.concatenate(chunks))
    return FrameVAE.channel_stats(raw)


@dataclass
class LatentSplit:
    """Cached latents of one split with window bookkeeping for (k + H)-frame training windows."""

    latents: np.ndarray  # [N, C, h, w]
    actions: np.ndarray  # [N, A]
    offsets: np.ndarray  # [E]
    lengths: np.ndarray  # [E]
    ids: list[str]

    def window_starts(self, length: int) -> np.ndarray:
        """Flat start indices of every window of ``length`` frames inside one episode."""
        starts = [
            off + np.arange(n - length + 1)
            for off, n in zip(self.offsets, self.lengths, strict=True)
            if n >= length
        ]
        return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)

    def gather(self, starts: np.ndarray, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latents [B, L, C, h, w], actions [B, L, A])`` for flat window starts."""
        idx = starts[:, None] + np.arange(length)[None]
        return torch.from_numpy(np.asarray(self.latents[idx])), torch.from_numpy(
            np.asarray(self.actions[idx])
        )


def _paths(root: Path, split: str) -> tuple[Path, Path, Path]:
    return root / f"{split}.npy", root / f"{split}_actions.npy", root / f"{split}.json"


def _load(root: Path, split: str, vae_hash: str, norm_hash: str) -> LatentSplit | None:
    lat_p, act_p, idx_p = _paths(root, split)
    if not (lat_p.is_file() and act_p.is_file() and idx_p.is_file()):
        return None
    try:
        doc = json.loads(idx_p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if doc.get("vae_hash") != vae_hash or doc.get("normalizer_hash") != norm_hash:
        logger.info("latent cache %s was made with other weights; re-encoding", idx_p)
        return None
    eps = doc["episodes"]
    return LatentSplit(
        latents=np.load(lat_p, mmap_mode="r", allow_pickle=False),
        actions=np.load(act_p, mmap_mode="r", allow_pickle=False),
        offsets=np.array([e["offset"] for e in eps], dtype=np.int64),
        lengths=np.array([e["length"] for e in eps], dtype=np.int64),
        ids=[e["id"] for e in eps],
    )


def ensure_latent_cache(
    root: Path,
    vae: FrameVAE,
    normalizer: ActionNormalizer,
    dataset: EpisodeDataset,
    splits: list[str],
    *,
    progress: bool = True,
) -> dict[str, LatentSplit]:
    """Encode every in-distribution episode of ``splits`` once (reusing a valid cache)."""
    root.mkdir(parents=True, exist_ok=True)
    vae_hash = module_hash(vae)
    norm_hash = hashlib.sha256(
        json.dumps(normalizer.to_dict(), sort_keys=True).encode()
    ).hexdigest()[:16]
    out: dict[str, LatentSplit] = {}
    vae.eval()
    for split in splits:
        cached = _load(root, split, vae_hash, norm_hash)
        if cached is not None:
            logger.info("latent cache for %s: reusing %s", split, root)
            out[split] = cached
            continue
        sub = dataset.select(split=split, shift=None)
        lats, acts, eps = [], [], []
        offset = 0
        for i in tqdm(range(len(sub)), desc=f"encode {split}", disable=not progress, unit="ep"):
            ep = sub[i]
            lats.append(encode_frames(vae, np.asarray(ep.frames)))
            acts.append(normalizer.normalize(np.asarray(ep.actions)))
            eps.append({"id": sub.record(i).id, "offset": offset, "length": ep.length})
            offset += ep.length
        lat_p, act_p, idx_p = _paths(root, split)
        c = vae.config.latent_shape
        np.save(
            lat_p,
            np.concatenate(lats) if lats else np.zeros((0, *c), np.float32),
            allow_pickle=False,
        )
        np.save(
            act_p,
            np.concatenate(acts) if acts else np.zeros((0, normalizer.dim), np.float32),
            allow_pickle=False,
        )
        idx_p.write_text(
            json.dumps(
                {"vae_hash": vae_hash, "normalizer_hash": norm_hash, "episodes": eps}, indent=1
            ),
            encoding="utf-8",
        )
        out[split] = _load(root, split, vae_hash, norm_hash)  # type: ignore[assignment]
        logger.info("latent cache for %s: %d episodes, %d frames", split, len(eps), offset)
    return out
