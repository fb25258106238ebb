"""FrameVAE: shapes, deterministic encoding, standardisation round trip, config dicts."""

from __future__ import annotations

import pytest
import torch

from world_monitor.models.vae import FrameVAE, VAEConfig

TINY = VAEConfig(image_size=32, block_out_channels=(32,), norm_num_groups=8, latent_channels=4)


def test_shapes_any_leading_dims() -> None:
    vae = FrameVAE(TINY).eval()
    assert TINY.latent_shape == (4, 8, 8)
    frames = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = vae.encode(frames)
        assert z.shape == (2, 3, 4, 8, 8)
        assert vae.decode(z).shape == frames.shape
        assert vae.encode(frames[0, 0]).shape == (4, 8, 8)
        assert vae(frames).shape == frames.shape


def test_encode_is_deterministic_posterior_mean() -> None:
    vae = FrameVAE(TINY).eval()
    frames = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        mean, logvar = vae.encode_distribution(frames)
        assert logvar.shape == mean.shape
        assert torch.equal(vae.encode(frames), vae.encode(frames))
        assert torch.allclose(vae.encode(frames), mean)


def test_latent_stats_standardise_and_invert() -> None:
    vae = FrameVAE(TINY).eval()
    frames = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        raw, _ = vae.encode_distribution(frames)
        mean, std = FrameVAE.channel_stats(raw)
        vae.set_latent_stats(mean, std)
        z = vae.encode(frames)
        assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
        assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4)
        assert torch.allclose(vae.decode(z), vae.decode_raw(raw), atol=1e-5)
    assert "latent_mean" in vae.state_dict()
    with pytest.raises(ValueError):
        vae.set_latent_stats(torch.zeros(3), torch.ones(3))


def test_config_round_trip() -> None:
    cfg = VAEConfig(unshuffle=8, latent_channels=8)
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.latent_shape == (8, 8, 8)
