"""The data-driven C³ tolerance grid (issue 15 item 5): quantiles of the training latents'
one-step change, recorded in the bundle, used by evaluate-model and as the runtime ε."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_world import TINY_OVERRIDES, make_tiny_dataset

from world_monitor.config import load_config
from world_monitor.models.bundle import load_bundle
from world_monitor.training.eps_grid import data_eps_grid
from world_monitor.training.evaluate import EvalOptions, evaluate_bundle
from world_monitor.training.latent_cache import LatentSplit
from world_monitor.training.trainer import train


def _split(latents: np.ndarray, lengths: list[int]) -> LatentSplit:
    offsets = np.cumsum([0, *lengths[:-1]])
    n = latents.shape[0]
    return LatentSplit(latents, np.zeros((n, 2), np.float32), offsets, np.asarray(lengths), ["a"])


def test_the_grid_is_the_quantiles_of_the_one_step_change() -> None:
    # one episode whose every element moves by exactly k * 0.01 at step k: changes 0.01..0.09
    z = np.cumsum(np.repeat(np.arange(10)[:, None] * 0.01, 8, axis=1), axis=0)
    split = _split(z.reshape(10, 2, 2, 2).astype(np.float32), [10])
    grid = data_eps_grid(split, (0.1, 0.5, 0.9))
    expected = np.quantile(np.repeat(np.arange(1, 10) * 0.01, 8), (0.1, 0.5, 0.9))
    assert grid == pytest.approx(tuple(expected), rel=1e-3)  # (0.011, 0.05, 0.089)
    assert list(grid) == sorted(set(grid))


def test_pairs_never_cross_an_episode_boundary() -> None:
    # two static episodes at very different levels: the jump between them is not a change
    z = np.concatenate([np.zeros((5, 1, 1, 1)), np.full((5, 1, 1, 1), 100.0)]).astype(np.float32)
    with pytest.raises(ValueError, match="barely change in one step"):
        data_eps_grid(_split(z, [5, 5]))


def test_bad_quantiles_are_refused() -> None:
    z = np.random.default_rng(0).normal(size=(6, 1, 2, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="increasing values in"):
        data_eps_grid(_split(z, [6]), (0.5, 0.2))


def test_a_bundle_trained_on_the_data_grid_records_and_uses_it(tmp_path: Path) -> None:
    data = make_tiny_dataset(tmp_path / "ds", calib=2, test=2)
    cfg = load_config(
        [
            *TINY_OVERRIDES,
            "train.dynamics.steps=10",
            "train.vae.steps=10",
            "train.dynamics.eps.mode=data",
        ]
    )
    result = train(cfg, tmp_path / "run", data_root=data, command="pytest eps", progress=False)
    config = load_bundle(result.bundle).config
    grid = config["train"]["dynamics"]["eps"]["grid"]
    assert len(grid) >= 2 and grid == sorted(set(grid)) and grid != [0.1 * k for k in range(1, 11)]
    assert config["model"]["rollout"]["epsilon"] == grid[len(grid) // 2]
    opts = EvalOptions(windows=2, shift_windows=1, figures=0, num_threads=1, progress=False)
    report = evaluate_bundle(result.bundle, out_dir=tmp_path / "eval", options=opts)
    assert report["eps_grid"] == pytest.approx(grid)
    per_eps = report["splits"]["in_distribution"]["per_eps"]
    assert sorted(float(e) for e in per_eps) == pytest.approx(grid)
