"""Backend-agnostic decision rollout: frames + action chunk -> future latents + C3 confidence.

This is :class:`world_monitor.models.rollout.WorldModelRollout` (``joint`` and
``deterministic`` modes) re-expressed over an :class:`InferenceBackend`: the networks run in
whatever engine loaded (torch, onnxruntime, TensorRT) while the sampler - the noise, the
diffusers ``DDIMScheduler`` (v-prediction, built by ``make_scheduler`` so the schedule cannot
drift from training) and the frame/action layout - stays here in one place. With the torch
backend it reproduces ``WorldModelRollout`` to float rounding (tested <= 1e-5), with
onnxruntime-CPU to <= 1e-4.

Joint mode: context frames are clean with ``t = 0``; all ``H`` future frames start from seeded
Gaussian noise and share each DDIM timestep; every step is one ``denoise_step`` call, and the
probe's logits of the **final** step are the confidence (earlier steps' logits are discarded,
as in ``WorldModelRollout``). Deterministic mode is one ``predict_step`` call.

The frame-by-frame ("autoregressive") mode is not offered here: it costs ``H * K`` passes, which
does not fit the decision budget on the target CPU (see models/vae.py), and its KV-cache variant
needs graphs with cache inputs.

Run ``python -m world_monitor.runtime.engine_rollout`` for the per-decision latency table
(torch eager vs onnxruntime-CPU with 1 and 2 intra-op threads, default model sizes).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from world_monitor.data.normalize import frames_to_float
from world_monitor.models.dynamics import DynamicsConfig, make_scheduler
from world_monitor.models.rollout import frame_aligned_actions
from world_monitor.runtime.backends.base import InferenceBackend

__all__ = ["ENGINE_ROLLOUT_MODES", "DecisionResult", "EngineRollout"]

logger = logging.getLogger(__name__)

ENGINE_ROLLOUT_MODES = ("joint", "deterministic")


@dataclass
class DecisionResult:
    """One decision's world-model output. ``latents``/``confidence``: ``[H, C, h, w]`` float32;
    ``latency_ms``: ``encode``, ``rollout``, ``total`` (wall clock, ms)."""

    latents: np.ndarray
    confidence: np.ndarray
    latency_ms: dict[str, float] = field(default_factory=dict)
    backend: str = ""
    mode: str = ""


class EngineRollout:
    """Drives a backend through one decision (see module docstring)."""

    def __init__(
        self,
        backend: InferenceBackend,
        mode: str = "joint",
        num_inference_steps: int = 4,
        epsilon: float = 0.5,
        action_normalizer: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if mode not in ENGINE_ROLLOUT_MODES:
            raise ValueError(f"mode must be one of {ENGINE_ROLLOUT_MODES}, got {mode!r}")
        need = "denoise_step" if mode == "joint" else "predict_step"
        if need not in backend.graphs:
            raise ValueError(
                f"{mode} mode needs graph {need!r}; backend {backend.name} has {backend.graphs}"
            )
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        self.backend = backend
        self.meta = backend.meta
        self.mode = mode
        self.num_inference_steps = int(num_inference_steps)
        self.epsilon = float(epsilon)
        self.action_normalizer = action_normalizer
        self.scheduler = make_scheduler(DynamicsConfig.from_dict(self.meta.dynamics))

    # ------------------------------------------------------------------ validation
    def _frames(self, frames: np.ndarray) -> np.ndarray:
        m = self.meta
        frames = np.asarray(frames)
        want = (m.context_length, *m.image_size, 3)
        if frames.dtype != np.uint8:
            raise TypeError(f"context_frames: expected uint8, got {frames.dtype}")
        if frames.shape != want:
            raise ValueError(f"context_frames: expected shape {want}, got {frames.shape}")
        x = frames_to_float(frames)  # the training pipeline's exact uint8 -> [-1, 1] mapping
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def _actions(self, name: str, actions: np.ndarray | None, steps: int) -> np.ndarray | None:
        if actions is None:
            return None
        a = np.asarray(actions, dtype=np.float32)
        if a.shape != (steps, self.meta.action_dim):
            raise ValueError(
                f"{name}: expected shape {(steps, self.meta.action_dim)}, got {a.shape}"
            )
        if self.action_normalizer is not None:
            a = np.asarray(self.action_normalizer(a), dtype=np.float32)
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: contains NaN or inf")
        return a

    # ------------------------------------------------------------------ API
    def decide(
        self,
        context_frames: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None = None,
        *,
        epsilon: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> DecisionResult:
        """``context_frames`` uint8 ``[k,H,W,3]``, ``action_chunk`` ``[H,A]`` (raw if an
        ``action_normalizer`` was given, else already normalised), optional ``context_actions``
        ``[k-1,A]`` -> :class:`DecisionResult`. Noise comes from ``generator`` or ``seed``."""
        t0 = time.perf_counter()
        x = self._frames(context_frames)
        latents = self.backend.encode(x)
        t1 = time.perf_counter()
        future, conf = self._rollout(
            latents, action_chunk, context_actions, epsilon, generator, seed
        )
        t2 = time.perf_counter()
        return DecisionResult(
            latents=future,
            confidence=conf,
            latency_ms={
                "encode": (t1 - t0) * 1e3,
                "rollout": (t2 - t1) * 1e3,
                "total": (t2 - t0) * 1e3,
            },
            backend=self.backend.name,
            mode=self.mode,
        )

    def rollout_latents(
        self,
        context_latents: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None = None,
        *,
        epsilon: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> DecisionResult:
        """Same as :meth:`decide` from already-encoded context latents ``[k,C,h,w]``."""
        lat = np.asarray(context_latents, dtype=np.float32)
        want = (self.meta.context_length, *self.meta.latent_shape)
        if lat.shape != want:
            raise ValueError(f"context_latents: expected shape {want}, got {lat.shape}")
        t0 = time.perf_counter()
        future, conf = self._rollout(lat, action_chunk, context_actions, epsilon, generator, seed)
        ms = (time.perf_counter() - t0) * 1e3
        return DecisionResult(
            future, conf, {"encode": 0.0, "rollout": ms, "total": ms}, self.backend.name, self.mode
        )

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Predicted latents ``[N,C,h,w]`` -> frames ``[N,3,H,W]`` in [-1, 1] (previews)."""
        return self.backend.decode(latents)

    # ------------------------------------------------------------------ sampler
    def _rollout(
        self,
        context_latents: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None,
        epsilon: float | None,
        generator: torch.Generator | None,
        seed: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        m = self.meta
        k, horizon = m.context_length, m.horizon
        chunk = self._actions("action_chunk", action_chunk, horizon)
        ctx_a = self._actions("context_actions", context_actions, k - 1)
        acts_t, valid_t = frame_aligned_actions(
            torch.from_numpy(chunk)[None],
            k,
            None if ctx_a is None else torch.from_numpy(ctx_a)[None],
        )
        actions = acts_t.numpy()
        valid = valid_t.numpy()
        eps = np.full((1, k + horizon), self.epsilon if epsilon is None else epsilon, np.float32)
        context = context_latents[None].astype(np.float32, copy=False)
        if self.mode == "deterministic":
            future, logits = self.backend.predict_step(context, actions, valid, eps)
            return future[0], _sigmoid(logits[0])
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        sched = self.scheduler
        sched.set_timesteps(self.num_inference_steps)
        x = torch.randn((1, horizon, *m.latent_shape), generator=generator, dtype=torch.float32)
        ts = np.zeros((1, k + horizon), dtype=np.int64)
        logits = None
        for t in sched.timesteps:
            ts[:, k:] = int(t)
            latents = np.concatenate([context, x.numpy()], axis=1)
            v, logits = self.backend.denoise_step(latents, ts, actions, valid, eps)
            x = sched.step(torch.from_numpy(np.ascontiguousarray(v[:, k:])), t, x).prev_sample
        assert logits is not None  # num_inference_steps >= 1
        return x[0].numpy(), _sigmoid(logits[0, k:])


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # torch.sigmoid, not a numpy formula, so results match WorldModelRollout bit for bit
    return torch.sigmoid(torch.from_numpy(np.ascontiguousarray(logits))).numpy()


# ---------------------------------------------------------------------------- measurement
def _percentiles(xs: list[float]) -> tuple[float, float]:
    ys = sorted(xs)
    p95 = ys[min(len(ys) - 1, round(0.95 * (len(ys) - 1)))]
    return statistics.median(ys), p95


def measure(
    repeats: int = 50,
    steps: int = 4,
    threads: tuple[int, ...] = (1, 2),
    compile_torch: bool = False,
) -> list[dict[str, Any]]:
    """p50/p95 ms per decision (default configs, random weights, k=2, H=8, batch 1)."""
    import os
    import platform

    import onnxruntime

    from world_monitor.runtime.backends.ort_backend import OrtBackend
    from world_monitor.runtime.backends.torch_backend import TorchBackend
    from world_monitor.runtime.export import WorldModelModules, export_onnx

    torch.set_num_threads(1)
    modules = WorldModelModules.random(variant="both", seed=0)
    logger.info(
        "hardware: %s, %s CPUs (load avg %s) | torch %s, onnxruntime %s | batch 1, %dx%d frames, "
        "k=%d, H=%d, latent %s, default configs, random weights, %d repeats",
        platform.processor() or platform.machine(),
        os.cpu_count(),
        ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        torch.__version__,
        onnxruntime.__version__,
        *modules.image_size,
        modules.context_length,
        modules.horizon,
        modules.latent_shape,
        repeats,
    )
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (modules.context_length, *modules.image_size, 3), dtype=np.uint8)
    chunk = rng.standard_normal((modules.horizon, modules.action_dim)).astype(np.float32)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(modules, Path(tmp))
        backends: list[tuple[str, Callable[[], InferenceBackend]]] = [
            ("torch eager (1 thread)", lambda: TorchBackend(modules, num_threads=1)),
        ]
        if compile_torch:
            backends.append(
                (
                    "torch.compile (1 thread)",
                    lambda: TorchBackend(modules, compile=True, num_threads=1),
                )
            )
        for n in threads:
            backends.append(
                (
                    f"onnxruntime CPU ({n} thread{'s' if n > 1 else ''})",
                    lambda n=n: OrtBackend(tmp, intra_op_num_threads=n),
                )
            )
        for label, make in backends:
            backend = make()
            backend.warmup(3)
            for mode in ENGINE_ROLLOUT_MODES:
                roll = EngineRollout(backend, mode=mode, num_inference_steps=steps)
                for _ in range(3):
                    roll.decide(frames, chunk, seed=0)
                lat: dict[str, list[float]] = {"encode": [], "rollout": [], "total": []}
                for i in range(repeats):
                    r = roll.decide(frames, chunk, seed=i)
                    for key in lat:
                        lat[key].append(r.latency_ms[key])
                row = {
                    "backend": label,
                    "mode": mode if mode == "deterministic" else f"joint K={steps}",
                }
                for key, xs in lat.items():
                    row[f"{key}_p50"], row[f"{key}_p95"] = _percentiles(xs)
                rows.append(row)
                logger.info(
                    "%-28s %-14s total p50 %6.1f p95 %6.1f | encode p50 %5.1f | rollout p50 %6.1f ms",
                    label,
                    row["mode"],
                    row["total_p50"],
                    row["total_p95"],
                    row["encode_p50"],
                    row["rollout_p50"],
                )
            torch.set_num_threads(1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="per-decision latency, torch vs onnxruntime-CPU")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    measure(args.repeats, args.steps, tuple(args.threads), args.compile)


if __name__ == "__main__":
    main()
