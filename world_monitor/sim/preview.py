"""Contact sheet of episodes: one row per episode, ~6 frames, shift mask overlaid in cyan.

Cyan because the scene's own task colours are red (puck) and green (goal): a red overlay made the
puck and the mask indistinguishable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from world_monitor.data.episode import Episode

__all__ = ["save_preview"]

_SCALE_TO = 128  # upscale small frames so a 64x64 render is legible in the sheet
_TITLE_H = 14
_MASK_RGB = np.array([0.0, 255.0, 255.0])


def _overlay(frame: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    out = frame.astype(np.float32)
    if mask is not None and mask.any():
        out[mask] = 0.45 * out[mask] + 0.55 * _MASK_RGB
    return out.astype(np.uint8)


def save_preview(episodes: list[Episode], path: str | Path, n_frames: int = 6) -> Path:
    """Write a PNG with one row per episode (title: scenario, severity, onset, outcome)."""
    if not episodes:
        raise ValueError("save_preview needs at least one episode")
    cell = max(_SCALE_TO, max(ep.image_size[0] for ep in episodes))
    width, row_h = n_frames * (cell + 2), cell + _TITLE_H + 2
    sheet = Image.new("RGB", (width, row_h * len(episodes)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, ep in enumerate(episodes):
        m = ep.meta
        outcome = "success" if m.success else f"FAIL {m.failure_reason}@{m.failure_step}"
        title = (
            f"{m.scenario} sev={m.severity} onset={m.shift_onset} seed={m.seed} "
            f"policy={m.policy} {outcome}"
        )
        y0 = r * row_h
        draw.text((2, y0 + 1), title, fill=(0, 0, 0))
        for c, t in enumerate(np.linspace(0, ep.length - 1, n_frames).round().astype(int)):
            mask = None if ep.shift_mask is None else ep.shift_mask[t]
            img = Image.fromarray(_overlay(ep.frames[t], mask)).resize((cell, cell), Image.NEAREST)
            sheet.paste(img, (c * (cell + 2), y0 + _TITLE_H))
            draw.text((c * (cell + 2) + 2, y0 + _TITLE_H + 1), f"t={t}", fill=(255, 255, 255))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
