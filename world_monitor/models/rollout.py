"""Inference: roll the world model over an action chunk and read C3 confidence.

Given ``k`` context latents (or frames + a VAE) and an action chunk ``[H, A]``, returns the ``H``
predicted latents and the confidence ``q(eps)`` of every element, optionally decoded frames.

Modes (``RolloutConfig.mode``):

* ``"autoregressive"`` - the paper's scheme: one new frame at a time, DDIM over that frame only,
  all earlier frames clean (``t = 0``) in a sliding window of at most ``window`` frames
  (a slid window restarts positions and the first frame's action at 0/"none", exactly like a
  training clip's first frame). Without a cache: ``H * num_inference_steps`` passes over the
  window. With ``kv_cache`` (default, used while ``k + H <= window``): the clean frames'
  temporal keys/values are cached, so each DDIM step processes only the new frame
  (``H * (num_inference_steps + 1)`` one-frame passes); same numbers, ~3x faster here.
* ``"joint"`` - all ``H`` future frames denoised together, same timestep for all, clean context.
  Costs ``num_inference_steps`` passes (the latency-friendly diffusion mode).
* ``"deterministic"`` - :class:`DeterministicPredictor`, one pass, no sampling.

Confidence is taken from the probe **at the final denoising step of each newly generated
frame** and never re-estimated for older frames (re-estimating ruined calibration in the paper).
The probe is therefore only evaluated at final steps; earlier steps run the denoiser alone.

The per-step computations are plain ``nn.Module``s with fixed-shape tensor inputs
(:class:`DenoiseStep`, :class:`PredictStep`) so the runtime can export them to ONNX and drive the
DDIM update itself.

Actions: ``action_chunk[i]`` is executed between the last context frame and the next one, i.e.
future frame ``i`` is conditioned on ``action_chunk[i]``; ``context_actions`` (``[k-1, A]``, the
actions between the context frames) are optional - when missing they are marked invalid and the
model sees its learned "no action" embedding (train with random action dropout on context
frames if you rely on that).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from world_monitor.models.blocks import KV
from world_monitor.models.dynamics import (
    DeterministicPredictor,
    DynamicsTransformer,
    make_scheduler,
)
from world_monitor.models.probe import C3Probe
from world_monitor.models.vae import FrameVAE

__all__ = [
    "ROLLOUT_MODES",
    "DenoiseStep",
    "PredictStep",
    "RolloutConfig",
    "RolloutResult",
    "WorldModelRollout",
    "frame_aligned_actions",
]

logger = logging.getLogger(__name__)

ROLLOUT_MODES = ("autoregressive", "joint", "deterministic")


@dataclass
class RolloutConfig:
    """How to sample. ``window``: max frames the model sees per autoregressive step (context +
    new frame); ``None`` = the backbone's ``max_frames``. ``epsilon``: CS-BC tolerance used when
    the caller passes none (ignored by FSC probes). ``kv_cache``: autoregressive mode reuses the
    clean frames' temporal keys/values instead of recomputing them every step (same result, ~K+1
    one-frame passes per new frame instead of K passes over the whole window); it applies while
    the rollout fits the window, otherwise the window slides and everything is recomputed."""

    mode: str = "joint"
    num_inference_steps: int = 4
    window: int | None = None
    epsilon: float = 0.5
    kv_cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutConfig:
        return cls(**d)


@dataclass
class RolloutResult:
    """Batched outputs: ``latents``/``confidence`` ``[B, H, C, h, w]``, ``frames`` ``[B, H, 3, H, W]``."""

    latents: torch.Tensor
    confidence: torch.Tensor
    frames: torch.Tensor | None = None


class DenoiseStep(nn.Module):
    """One denoiser + probe pass - the unit to export to ONNX.

    ``(latents [B,F,C,h,w], timesteps [B,F] int64, actions [B,F,A], action_valid [B,F] float,
    epsilon [B,F] float) -> (v_pred [B,F,C,h,w], probe_logits [B,F,C,h,w])``.
    ``epsilon`` is ignored by FSC probes.
    """

    def __init__(self, dynamics: DynamicsTransformer, probe: C3Probe) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.probe = probe

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        actions: torch.Tensor,
        action_valid: torch.Tensor,
        epsilon: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        v, hidden, cond = self.dynamics(latents, timesteps, actions, action_valid)
        logits = self.probe(hidden, cond, epsilon if self.probe.needs_epsilon else None)
        return v, logits


class PredictStep(nn.Module):
    """Deterministic predictor + probe: ``(context [B,k,C,h,w], actions [B,k+H,A],
    action_valid [B,k+H], epsilon [B,k+H]) -> (future [B,H,C,h,w], logits [B,H,C,h,w])``."""

    def __init__(self, predictor: DeterministicPredictor, probe: C3Probe) -> None:
        super().__init__()
        self.predictor = predictor
        self.probe = probe

    def forward(
        self,
        context: torch.Tensor,
        actions: torch.Tensor,
        action_valid: torch.Tensor,
        epsilon: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        future, hidden, cond = self.predictor(context, actions, action_valid)
        logits = self.probe(hidden, cond, epsilon if self.probe.needs_epsilon else None)
        return future, logits[:, context.shape[1] :]


def frame_aligned_actions(
    action_chunk: torch.Tensor, k: int, context_actions: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build frame-aligned ``actions [B, k+H, A]`` and ``action_valid [B, k+H]`` for a rollout.

    Position ``k-1+i`` holds ``action_chunk[:, i]`` (executed from the last context frame on);
    positions ``< k-1`` hold ``context_actions`` (valid) or zeros (invalid); the last position is
    unused padding.
    """
    b, h, a = action_chunk.shape
    actions = action_chunk.new_zeros(b, k + h, a)
    valid = action_chunk.new_zeros(b, k + h)
    actions[:, k - 1 : k - 1 + h] = action_chunk
    valid[:, k - 1 : k - 1 + h] = 1
    if context_actions is not None and k > 1:
        if context_actions.shape[1] != k - 1:
            raise ValueError(f"context_actions must have k-1={k - 1} steps")
        actions[:, : k - 1] = context_actions
        valid[:, : k - 1] = 1
    return actions, valid


class WorldModelRollout(nn.Module):
    """Samples future latents over an action chunk and reads the probe's confidence."""

    def __init__(
        self,
        probe: C3Probe,
        dynamics: DynamicsTransformer | None = None,
        predictor: DeterministicPredictor | None = None,
        vae: FrameVAE | None = None,
        config: RolloutConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config or RolloutConfig()
        if self.config.mode not in ROLLOUT_MODES:
            raise ValueError(f"mode must be one of {ROLLOUT_MODES}")
        if self.config.mode == "deterministic" and predictor is None:
            raise ValueError("deterministic mode needs a DeterministicPredictor")
        if self.config.mode != "deterministic" and dynamics is None:
            raise ValueError(f"{self.config.mode} mode needs a DynamicsTransformer")
        self.probe = probe
        self.dynamics = dynamics
        self.predictor = predictor
        self.vae = vae
        self.step = DenoiseStep(dynamics, probe) if dynamics is not None else None
        self.predict_step = PredictStep(predictor, probe) if predictor is not None else None
        self.scheduler = make_scheduler(dynamics.config) if dynamics is not None else None

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def forward(
        self,
        context_latents: torch.Tensor,
        action_chunk: torch.Tensor,
        context_actions: torch.Tensor | None = None,
        epsilon: float | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        decode: bool = False,
    ) -> RolloutResult:
        """``context_latents [B,k,C,h,w]`` (or unbatched ``[k,C,h,w]``), ``action_chunk
        [B,H,A]`` (or ``[H,A]``) -> :class:`RolloutResult` (unbatched in, unbatched out).
        ``epsilon``: scalar or ``[B]``; defaults to ``config.epsilon``."""
        unbatched = context_latents.dim() == 4
        if unbatched:
            context_latents = context_latents.unsqueeze(0)
            action_chunk = action_chunk.unsqueeze(0)
            context_actions = None if context_actions is None else context_actions.unsqueeze(0)
        b, k = context_latents.shape[:2]
        actions, valid = frame_aligned_actions(action_chunk, k, context_actions)
        eps = torch.as_tensor(
            self.config.epsilon if epsilon is None else epsilon,
            dtype=context_latents.dtype,
            device=context_latents.device,
        )
        eps = (eps.unsqueeze(1) if eps.dim() == 1 else eps).expand(b, actions.shape[1]).contiguous()
        mode = self.config.mode
        if mode == "deterministic":
            latents, logits = self.predict_step(context_latents, actions, valid, eps)
        elif mode == "joint":
            latents, logits = self._joint(context_latents, actions, valid, eps, generator)
        elif self.config.kv_cache and actions.shape[1] <= self._window():
            latents, logits = self._autoregressive_cached(
                context_latents, actions, valid, eps, generator
            )
        else:
            latents, logits = self._autoregressive(context_latents, actions, valid, eps, generator)
        result = RolloutResult(latents=latents, confidence=torch.sigmoid(logits))
        if decode:
            if self.vae is None:
                raise ValueError("decode=True needs a VAE")
            result.frames = self.vae.decode(latents)
        if unbatched:
            result = RolloutResult(
                *(
                    None if t is None else t[0]
                    for t in (result.latents, result.confidence, result.frames)
                )
            )
        return result

    @torch.no_grad()
    def from_frames(
        self, context_frames: torch.Tensor, action_chunk: torch.Tensor, **kwargs: Any
    ) -> RolloutResult:
        """Same as :meth:`forward` but encodes ``context_frames [B,k,3,H,W]`` with the VAE first."""
        if self.vae is None:
            raise ValueError("from_frames needs a VAE")
        return self.forward(self.vae.encode(context_frames), action_chunk, **kwargs)

    # ------------------------------------------------------------------ samplers
    def _window(self) -> int:
        window = min(
            self.config.window or self.dynamics.config.max_frames,
            self.dynamics.config.max_frames,
        )
        if window < 2:
            raise ValueError("window must hold at least one context frame and the new frame")
        return window

    def _noise(
        self,
        shape: tuple[int, ...],
        like: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)

    def _joint(
        self,
        context: torch.Tensor,
        actions: torch.Tensor,
        valid: torch.Tensor,
        eps: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = context.shape[:2]
        horizon = actions.shape[1] - k
        sched = self.scheduler
        sched.set_timesteps(self.config.num_inference_steps)
        x = self._noise((b, horizon, *context.shape[2:]), context, generator)
        ts = torch.zeros(b, k + horizon, dtype=torch.long, device=context.device)
        logits = None
        steps = list(sched.timesteps)
        for i, t in enumerate(steps):
            ts[:, k:] = int(t)
            latents = torch.cat([context, x], dim=1)
            if i == len(steps) - 1:
                v, all_logits = self.step(latents, ts, actions, valid, eps)
                logits = all_logits[:, k:]
            else:
                v = self.dynamics(latents, ts, actions, valid)[0]
            x = sched.step(v[:, k:], t, x).prev_sample
        return x, logits

    def _autoregressive(
        self,
        context: torch.Tensor,
        actions: torch.Tensor,
        valid: torch.Tensor,
        eps: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = context.shape[:2]
        horizon = actions.shape[1] - k
        window = self._window()
        sched = self.scheduler
        sched.set_timesteps(self.config.num_inference_steps)
        steps = list(sched.timesteps)
        seq = context
        new_logits = []
        for i in range(horizon):
            j = k + i  # index of the frame being generated
            lo = max(0, j + 1 - window)
            x = self._noise((b, 1, *context.shape[2:]), context, generator)
            ts = torch.zeros(b, j + 1 - lo, dtype=torch.long, device=context.device)
            a, va, e = actions[:, lo : j + 1], valid[:, lo : j + 1], eps[:, lo : j + 1]
            for s, t in enumerate(steps):
                ts[:, -1] = int(t)
                latents = torch.cat([seq[:, lo:j], x], dim=1)
                if s == len(steps) - 1:
                    v, logits = self.step(latents, ts, a, va, e)
                    new_logits.append(logits[:, -1:])
                else:
                    v = self.dynamics(latents, ts, a, va)[0]
                x = sched.step(v[:, -1:], t, x).prev_sample
            seq = torch.cat([seq, x], dim=1)
        return seq[:, k:], torch.cat(new_logits, dim=1)

    def _autoregressive_cached(
        self,
        context: torch.Tensor,
        actions: torch.Tensor,
        valid: torch.Tensor,
        eps: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame-by-frame sampling with KV caches; numerically the same as
        :meth:`_autoregressive` without sliding (temporal attention is causal, so the clean
        frames' keys/values never change while later frames are generated)."""
        b, k = context.shape[:2]
        horizon = actions.shape[1] - k
        dyn, probe = self.dynamics, self.probe
        use_eps = probe.needs_epsilon
        sched = self.scheduler
        sched.set_timesteps(self.config.num_inference_steps)
        steps = list(sched.timesteps)
        a_cond = dyn.action_condition(actions, valid)
        zeros = torch.zeros(b, k, dtype=torch.long, device=context.device)

        def commit(
            frames: torch.Tensor, start: int, dyn_kv: list[KV] | None, probe_kv: KV | None
        ) -> tuple[list[KV], KV]:
            """Clean (t=0) pass over finished frames: append their keys/values to the caches."""
            f = frames.shape[1]
            t0 = zeros[:, :f]
            _, hidden, cond, kvs = dyn.forward_cached(frames, t0, a_cond, start, dyn_kv)
            e = eps[:, start : start + f] if use_eps else None
            _, pkv = probe.forward_cached(hidden, cond, e, probe_kv, with_logits=False)
            if dyn_kv is None:
                return kvs, pkv
            dyn_kv = [_cat_kv(old, new) for old, new in zip(dyn_kv, kvs, strict=True)]
            return dyn_kv, _cat_kv(probe_kv, pkv)

        dyn_kv, probe_kv = commit(context, 0, None, None)
        out_latents, out_logits = [], []
        for i in range(horizon):
            j = k + i
            x = self._noise((b, 1, *context.shape[2:]), context, generator)
            for s, t in enumerate(steps):
                ts = torch.full((b, 1), int(t), dtype=torch.long, device=context.device)
                v, hidden, cond, _ = dyn.forward_cached(x, ts, a_cond, j, dyn_kv)
                if s == len(steps) - 1:
                    e = eps[:, j : j + 1] if use_eps else None
                    logits, _ = probe.forward_cached(hidden, cond, e, probe_kv)
                    out_logits.append(logits)
                x = sched.step(v, t, x).prev_sample
            out_latents.append(x)
            if i < horizon - 1:
                dyn_kv, probe_kv = commit(x, j, dyn_kv, probe_kv)
        return torch.cat(out_latents, dim=1), torch.cat(out_logits, dim=1)


def _cat_kv(old: KV, new: KV) -> KV:
    """Append one frame's keys/values (dim 2 is the frame axis of temporal attention)."""
    return torch.cat([old[0], new[0]], dim=2), torch.cat([old[1], new[1]], dim=2)
