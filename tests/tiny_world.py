"""A tiny synthetic world shared by the training, runtime and replay tests.

The scene is a bright square on a dark background that moves by the (clipped) action, so a world
model has something learnable; a "lighting" shift brightens the background after its onset.
No simulator is needed, which keeps a whole train -> bundle -> calibrate -> monitor run within
seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from world_monitor.data.dataset import DatasetWriter
from world_monitor.data.episode import Episode, EpisodeMeta

SIZE = 16
LENGTH = 10

#: hydra overrides for the smallest model: 16x16 frames -> 4x4x4 latents, 4 tokens per frame
TINY_OVERRIDES = [
    "train=tiny",
    "model.context_length=2",
    "model.horizon=3",
    "model.vae.block_out_channels=[16]",
    "model.vae.norm_num_groups=8",
    "model.dynamics.dim=32",
    "model.dynamics.depth=1",
    "model.dynamics.heads=2",
    "model.dynamics.max_frames=8",
]


def _episode(seed: int, shift: str | None = None, onset: int | None = None) -> Episode:
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.5, 1.5, size=(LENGTH, 4)).astype(np.float32)
    frames = np.zeros((LENGTH, SIZE, SIZE, 3), dtype=np.uint8)
    pos = rng.integers(3, SIZE - 7, size=2).astype(np.float64)
    for t in range(LENGTH):
        frame = frames[t]
        frame[:] = 30
        if shift == "lighting" and t >= (onset or 0):
            frame[:] = 140
        y, x = int(pos[0]), int(pos[1])
        frame[y : y + 4, x : x + 4] = (230, 60, 40)
        pos = np.clip(pos + np.round(actions[t, :2]), 0, SIZE - 4)
    meta = EpisodeMeta(
        scenario=shift or "in_distribution",
        seed=seed,
        fps=10.0,
        success=True,
        shift=shift,
        severity=0.5 if shift else None,
        shift_onset=onset,
    )
    stamps = np.arange(LENGTH, dtype=np.float64) * 0.1
    return Episode(frames=frames, actions=actions, stamps=stamps, meta=meta)


def make_tiny_dataset(root: Path, *, calib: int = 1, test: int = 3, val: int = 2) -> Path:
    """Tiny dataset: 8 train, `val` val, `calib` calib and `test` test in-distribution episodes,
    plus two lighting-shift test episodes (from the start and with onset 4)."""
    writer = DatasetWriter(root, info={"note": "tiny synthetic test dataset"})
    plan = [("train", 8), ("val", val), ("calib", calib), ("test", test)]
    seed = 0
    for split, n in plan:
        for _ in range(n):
            writer.write(_episode(seed), episode_id=f"{split}-id-{seed:03d}", split=split)
            seed += 1
    for i, onset in enumerate((0, 4)):
        ep = _episode(100 + i, shift="lighting", onset=onset)
        writer.write(ep, episode_id=f"test-lighting-{i}", split="test")
    writer.finalize()
    return root
