"""Heatmaps: colormap upsampling and the decoder colour trick with a toy linear 'VAE'."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from world_monitor.uq.heatmap import (
    color_weights,
    confidence_heatmap,
    decoder_heatmap,
    pure_color_frames,
    reference_latents,
    to_uint8,
)

torch.set_num_threads(1)


def _encode(x: torch.Tensor) -> torch.Tensor:  # toy VAE, stride 4, latent = RGB means
    return F.avg_pool2d(x, 4)


def _decode(z: torch.Tensor) -> torch.Tensor:
    return F.interpolate(z, scale_factor=4, mode="nearest")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, (1, 0, 0)),
        (0.35, (1, 0, 0)),
        (0.425, (0.5, 0.5, 0)),
        (0.5, (0, 1, 0)),
        (0.75, (0, 0.5, 0.5)),
        (1.0, (0, 0, 1)),
    ],
)
def test_color_weights_breakpoints(q: float, expected: tuple[float, float, float]) -> None:
    g, r, b = color_weights(torch.tensor(q))
    assert (g.item(), r.item(), b.item()) == pytest.approx(expected, abs=1e-6)


def test_confidence_heatmap_shape_and_colours() -> None:
    q = torch.zeros(4, 8, 8)
    q[:, :, 4:] = 1.0
    img = confidence_heatmap(q, (32, 32))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    cmap = matplotlib.colormaps["RdYlGn"]
    assert tuple(img[0, 0]) == tuple(int(c * 255 + 0.5) for c in cmap(0.0)[:3])
    assert tuple(img[0, -1]) == tuple(int(c * 255 + 0.5) for c in cmap(1.0)[:3])
    assert confidence_heatmap(torch.rand(2, 4, 8, 8), (16, 16)).shape == (2, 16, 16, 3)


def test_decoder_heatmap_colours_and_composite() -> None:
    refs = reference_latents(_encode, (16, 16))
    assert refs[0].shape == (3, 4, 4)
    q = torch.full((3, 4, 4), 0.2)
    q[:, :, 2] = 0.5  # column 2: unsure -> red
    q[:, :, 3] = 0.9  # column 3: sure -> predicted frame
    pred = torch.full((3, 16, 16), 0.25)
    img = decoder_heatmap(q, refs, _decode, predicted_frame=pred)
    rgb = to_uint8(img)
    assert rgb.shape == (16, 16, 3)
    assert tuple(rgb[0, 0]) == (0, 255, 0)  # green (q ≤ 0.35)
    assert tuple(rgb[0, 9]) == (255, 0, 0)  # red (q = 0.5)
    # composited prediction (q > 0.75)
    assert tuple(rgb[0, 13]) == tuple(to_uint8(pred)[0, 0])
    no_comp = to_uint8(decoder_heatmap(q, refs, _decode))
    # q = 0.9 without compositing: 0.2 red + 0.8 blue
    assert tuple(no_comp[0, 13]) == (int(0.2 * 255 + 0.5), 0, int(0.8 * 255 + 0.5))
    frames = pure_color_frames((2, 2))
    assert frames[0, 1].min() == 1.0 and frames[1, 0].min() == 1.0 and frames[2, 2].min() == 1.0
