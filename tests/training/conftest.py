"""A tiny synthetic dataset and tiny model overrides for the training/evaluation tests.

The scene is a bright square on a dark background that moves by the (clipped) action, so a world
model has something learnable; a "lighting" shift brightens the background after its onset.
No simulator is needed, which keeps the whole train -> bundle -> evaluate run within seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_world import TINY_OVERRIDES, make_tiny_dataset


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data") / "ds")
