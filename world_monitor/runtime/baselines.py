"""Baseline detectors run in the same pass as the monitor, so every number is on the same inputs.

Detection claims are only meaningful against baselines computed on exactly the same decisions
(shared conventions). Each function here turns one decision (context latents, the monitor's own
predicted latents, the episode) into one score, higher = riskier:

* :func:`sample_spread` — the diffusion-noise heuristic: how much the prediction moves when only
  the sampling noise changes. It needs no probe, so it is the natural "why train C³ at all?"
  baseline. A deterministic bundle ignores the seed, so its spread is identically 0 (reported,
  not hidden).
* :class:`EnsembleBaseline` — disagreement with independently trained bundles. Each bundle has
  its own VAE, so two bundles' latents live in different spaces and cannot be subtracted;
  disagreement is therefore measured on the **decoded** predicted frames (pixels in [-1, 1]),
  which is also what a deep ensemble of full world models would compare.
* :func:`oracle_error` — the true prediction error after the fact (encode the real future frames
  with this bundle's VAE). Not available at run time; it is the ceiling a perfect uncertainty
  estimate could reach.
* The VAE reconstruction error of the current frame is the monitor's own ``recon`` signal, so it
  needs no extra code.

MC-dropout does not apply: the trained networks contain no dropout layers, so repeated passes
are identical; this is stated in the evaluation output rather than reported as a number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.normalize import frames_to_float

__all__ = [
    "MC_DROPOUT_NOTE",
    "EnsembleBaseline",
    "oracle_error",
    "sample_spread",
    "to_model_frames",
]

LOG = logging.getLogger(__name__)

MC_DROPOUT_NOTE = (
    "not applicable: the trained networks have no dropout layers, so MC-dropout passes are "
    "identical (the seed-spread and ensemble baselines cover sampling and model uncertainty)"
)


def to_model_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 ``[N,H,W,3]`` → float ``[N,3,H,W]`` in [-1, 1], the mapping the VAE was trained on."""
    return np.ascontiguousarray(frames_to_float(np.asarray(frames)).transpose(0, 3, 1, 2))


def sample_spread(
    rollout: Any,
    context_latents: np.ndarray,
    chunk: np.ndarray,
    context_actions: np.ndarray | None,
    first: np.ndarray,
    seeds: Sequence[int],
) -> float:
    """Std over sampling seeds of the last predicted latent frame, averaged over its elements.

    ``first`` is the monitor's own prediction (its seed), so only ``len(seeds)`` extra rollouts
    are run; the last horizon step is used because sampling noise accumulates along the horizon.
    Returns NaN with fewer than two samples in total.
    """
    samples = [np.asarray(first, dtype=np.float64)[-1]]
    for seed in seeds:
        res = rollout.rollout_latents(context_latents, chunk, context_actions, seed=int(seed))
        samples.append(np.asarray(res.latents, dtype=np.float64)[-1])
    if len(samples) < 2:
        return float("nan")
    return float(np.std(np.stack(samples), axis=0).mean())


def oracle_error(backend: Any, predicted: np.ndarray, future_frames: np.ndarray) -> float:
    """Mean |predicted − encoded real future| over the future frames that exist (NaN if none).

    ``future_frames`` are ``episode.frames[t+1 : t+1+H]`` (uint8), truncated at the episode end;
    only as many predicted steps as there are real frames are compared.
    """
    n = int(len(future_frames))
    if n == 0:
        return float("nan")
    target = np.asarray(backend.encode(to_model_frames(future_frames)), dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)[:n]
    return float(np.abs(pred - target).mean())


class EnsembleBaseline:
    """Disagreement between this bundle's decoded prediction and other bundles' (see module doc).

    The members are loaded as uncalibrated monitors (thresholds are irrelevant here) and roll
    out the same context frames, chunk, context actions and seed as the evaluated monitor.
    """

    def __init__(
        self,
        bundles: Sequence[str | Path],
        *,
        backend: str | Sequence[str] | None,
        engines_dir: str | Path,
        reference: Any,
    ) -> None:
        from world_monitor.runtime.monitor import Monitor, MonitorError

        self.paths = [str(b) for b in bundles]
        self.members = []
        for path in bundles:
            member = Monitor.from_bundle(
                path, backend, engines_dir=engines_dir, allow_uncalibrated=True
            )
            if (
                member.context_length != reference.context_length
                or member.horizon != reference.horizon
                or member.image_size != reference.image_size
                or member.action_dim != reference.action_dim
            ):
                raise MonitorError(
                    f"ensemble bundle {path}: context/horizon/image size/action dim differ from "
                    "the evaluated bundle; an ensemble must see the same inputs"
                )
            self.members.append(member)
        LOG.info("ensemble baseline: %d member(s) %s", len(self.members), self.paths)

    def __len__(self) -> int:
        return len(self.members)

    def disagreement(
        self,
        reference: Any,
        frames: np.ndarray,
        chunk: np.ndarray,
        context_actions: np.ndarray | None,
        predicted: np.ndarray,
        seed: int,
    ) -> float:
        """Mean over members of mean |decode(ours) − decode(member's)| over the H frames."""
        ours = np.asarray(reference.backend.decode(np.asarray(predicted, np.float32)), np.float64)
        x = to_model_frames(frames)
        diffs = []
        for member in self.members:
            ctx = member.backend.encode(x)
            res = member.rollout.rollout_latents(ctx, chunk, context_actions, seed=seed)
            theirs = np.asarray(member.backend.decode(res.latents), dtype=np.float64)
            diffs.append(float(np.abs(ours - theirs).mean()))
        return float(np.mean(diffs))
