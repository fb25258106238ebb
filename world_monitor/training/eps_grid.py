"""The C³ tolerance grid from the data: quantiles of how much the latents change in one step.

Why: the probe learns ``P(|prediction - truth| < ε)`` for ε drawn from a grid. The fixed grid
0.1–1.0 (in standardised latent units) suits a scene that moves; on a scene where most of the
image never changes nearly every element is within ε at every grid value (base rates 0.96–0.998
measured on a static scene, 0.956 on the built-in simulator's ``train=small`` run), so the
labels carry almost no information and the probe cannot learn to doubt. Quantiles of the
one-step change ``|z[t+1] - z[t]|`` of the training latents put the grid where the data's
errors live on any scene: a model that predicted "nothing moves" would be right at quantile
``q`` of them at ε = grid value ``q``, so the labels of a real model stay informative across the
grid. Opt in with ``train.dynamics.eps={mode: data}``; the grid is written into the bundle
(``train.dynamics.eps.grid``) and the runtime ε becomes its median.
"""

from __future__ import annotations

import numpy as np

from world_monitor.training.latent_cache import LatentSplit

__all__ = ["DEFAULT_QUANTILES", "data_eps_grid"]

#: quantile levels of the one-step latent change used as the ε grid (10 values)
DEFAULT_QUANTILES: tuple[float, ...] = tuple(round(0.05 + 0.1 * k, 2) for k in range(10))
_MIN_EPS = 1e-4


def data_eps_grid(
    split: LatentSplit,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
    *,
    max_pairs: int = 4096,
    seed: int = 0,
) -> tuple[float, ...]:
    """Strictly increasing ε grid: the ``quantiles`` of ``|z[t+1] - z[t]|`` over (at most
    ``max_pairs`` seeded) consecutive frame pairs of ``split``, all elements pooled.

    Values are rounded to 4 significant digits and floored at 1e-4; a grid with fewer than two
    distinct values (latents that never change) raises ValueError naming it.
    """
    qs = tuple(float(q) for q in quantiles)
    if not qs or any(not 0 < q < 1 for q in qs) or list(qs) != sorted(set(qs)):
        raise ValueError(f"eps quantiles must be increasing values in (0, 1), got {list(qs)}")
    firsts = [
        off + np.arange(n - 1) for off, n in zip(split.offsets, split.lengths, strict=True) if n > 1
    ]
    if not firsts:
        raise ValueError("eps mode 'data': no training episode has two frames")
    starts = np.concatenate(firsts).astype(np.int64)
    if starts.size > max_pairs:
        starts = np.sort(np.random.default_rng(seed).choice(starts, max_pairs, replace=False))
    z = np.asarray(split.latents)
    change = np.abs(z[starts + 1].astype(np.float64) - z[starts].astype(np.float64)).ravel()
    values = np.quantile(change, qs)
    grid = sorted({max(_MIN_EPS, float(f"{v:.4g}")) for v in values})
    if len(grid) < 2:
        raise ValueError(
            f"eps mode 'data': the training latents barely change in one step (quantiles "
            f"{[float(v) for v in values]}); use the fixed grid (eps.mode=grid)"
        )
    return tuple(grid)
