"""Shared fixtures for model tests: tiny seeded configs, one thread."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from world_monitor.models.dynamics import DynamicsConfig


@pytest.fixture(autouse=True)
def _one_thread_seeded() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def tiny_dyn_config() -> DynamicsConfig:
    return DynamicsConfig(
        latent_channels=4,
        latent_size=(8, 8),
        patch_size=2,
        action_dim=4,
        dim=32,
        depth=2,
        heads=2,
        max_frames=12,
    )


def _randomize(module: nn.Module, std: float = 0.05) -> nn.Module:
    """Give zero-initialised (adaLN-Zero, final layer) weights random values, so that tests of
    causality / gradients are not trivially satisfied by an all-zero output."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if not bool(p.any()):
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module


@pytest.fixture
def randomize() -> Callable[[nn.Module], nn.Module]:
    return _randomize
