"""The backend interface every inference engine implements, and the load report.

Why one interface: the Monitor, the ROS node, replay and the benchmarks must not care whether a
decision ran in TensorRT on a Jetson, onnxruntime on a laptop CPU or eager torch in a notebook.
Backends exchange plain ``numpy`` arrays keyed by the ONNX input/output names of
:mod:`world_monitor.runtime.export` (the same names whatever engine runs the graph), and each one
says what actually loaded (provider, precision, device) because "which backend ran" is part of
every assessment.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from world_monitor.runtime.export import GRAPH_INPUTS, GRAPH_OUTPUTS, parity_ok

__all__ = [
    "BackendAttempt",
    "BackendError",
    "BackendReport",
    "BackendUnavailable",
    "InferenceBackend",
    "ModelMeta",
]

logger = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """No backend in the preference list could load (or a loaded backend failed at run time).

    ``attempts`` lists every backend tried and why it was skipped, so a fail-fast start-up
    message is actionable without reading logs.
    """

    def __init__(self, message: str, attempts: list[BackendAttempt] | None = None) -> None:
        self.attempts = list(attempts or [])
        if self.attempts:
            message += "\n" + "\n".join(f"  - {a.name}: {a.reason}" for a in self.attempts)
        super().__init__(message)


class BackendUnavailable(Exception):
    """Raised by a backend constructor: this backend cannot run here; the message says why."""


@dataclass
class BackendAttempt:
    """One entry of the load report: ``loaded`` or skipped with ``reason``."""

    name: str
    loaded: bool
    reason: str
    seconds: float


@dataclass
class BackendReport:
    """Which backend loaded, and why each earlier preference was skipped."""

    preference: list[str]
    attempts: list[BackendAttempt] = field(default_factory=list)
    loaded: str | None = None
    description: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line (a log record per backend load, not one per attempt: issue 18)."""
        attempts = "; ".join(
            f"{a.name} {'loaded' if a.loaded else 'skipped'} ({a.reason}, {a.seconds:.2f}s)"
            for a in self.attempts
        )
        return f"backend: {self.loaded or 'NONE'} (preference {list(self.preference)}): {attempts}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "preference": list(self.preference),
            "loaded": self.loaded,
            "attempts": [asdict(a) for a in self.attempts],
            "description": self.description,
        }


@dataclass(frozen=True)
class ModelMeta:
    """Geometry a backend-driven rollout needs (from ``export.json`` or the torch modules)."""

    model_hash: str
    context_length: int
    horizon: int
    image_size: tuple[int, int]
    latent_shape: tuple[int, int, int]
    action_dim: int
    dynamics: dict[str, Any]
    probe_variant: str
    needs_epsilon: bool

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelMeta:
        return cls(
            model_hash=str(d["model_hash"]),
            context_length=int(d["context_length"]),
            horizon=int(d["horizon"]),
            image_size=tuple(int(x) for x in d["image_size"]),  # type: ignore[arg-type]
            latent_shape=tuple(int(x) for x in d["latent_shape"]),  # type: ignore[arg-type]
            action_dim=int(d["action_dim"]),
            dynamics=dict(d["dynamics"]),
            probe_variant=str(d["probe_variant"]),
            needs_epsilon=bool(d["needs_epsilon"]),
        )

    @property
    def num_frames(self) -> int:
        return self.context_length + self.horizon


class InferenceBackend(ABC):
    """Runs the exported graphs (see :mod:`world_monitor.runtime.export`) on one engine.

    Subclasses implement :meth:`run`, :attr:`graphs`, :meth:`describe`; the typed helpers
    (:meth:`encode`, :meth:`denoise_step`, :meth:`predict_step`, :meth:`decode`) and
    :meth:`warmup` are shared so every backend is called the same way.
    """

    name: str = "abstract"
    device: str = "cpu"
    precision: str = "fp32"
    #: whether :meth:`run` may be called from several threads at once (offline replay computes
    #: coming decisions' model passes on spare cores only then: :mod:`..model_pass`)
    concurrent_runs: bool = False

    def __init__(self, meta: ModelMeta) -> None:
        self.meta = meta

    # ------------------------------------------------------------------ to implement
    @property
    @abstractmethod
    def graphs(self) -> tuple[str, ...]:
        """Graph names this backend can run."""

    @abstractmethod
    def input_names(self, graph: str) -> tuple[str, ...]:
        """Inputs graph ``graph`` really takes (an FSC probe's graphs have no ``epsilon``)."""

    @abstractmethod
    def _run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run with inputs already filtered to :meth:`input_names` and made contiguous."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What actually loaded: provider(s), precision, device, files, options."""

    @property
    def label(self) -> str:
        """Short "backend:provider-or-device" tag for assessments/diagnostics
        (e.g. ``onnxruntime:CPUExecutionProvider``, ``tensorrt:fp16``, ``torch:cpu``)."""
        return f"{self.name}:{self.device}"

    def parity_tolerance(self) -> tuple[float, float]:
        """(atol, rtol) for the load-time check against eager torch (fp32 default)."""
        return 1e-4, 1e-4

    def close(self) -> None:
        """Release sessions/engines (optional; the default holds nothing to release)."""
        return None

    # ------------------------------------------------------------------ shared
    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{input name: array}`` -> ``{output name: array}`` for graph ``graph``.

        Extra inputs the graph does not take (``epsilon`` for an FSC probe) are ignored; a
        missing one raises ``KeyError`` naming it.
        """
        if graph not in self.graphs:
            raise KeyError(f"{self.name} backend has no graph {graph!r} (have {self.graphs})")
        feed: dict[str, np.ndarray] = {}
        for key in self.input_names(graph):
            if key not in inputs:
                raise KeyError(f"{graph}: missing input {key!r}")
            want = np.int64 if key == "timesteps" else np.float32
            feed[key] = np.ascontiguousarray(inputs[key], dtype=want)
        return self._run(graph, feed)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """``frames [N,3,H,W]`` float in [-1,1] -> standardised latents ``[N,C,h,w]``."""
        return self.run("encoder", {"frames": frames})["latents"]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """``latents [N,C,h,w]`` -> frames ``[N,3,H,W]`` (float, not clamped)."""
        return self.run("decoder", {"latents": latents})["frames"]

    def denoise_step(
        self,
        latents: np.ndarray,
        timesteps: np.ndarray,
        actions: np.ndarray,
        action_valid: np.ndarray,
        epsilon: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One denoiser+probe pass over ``[1, k+H]`` frames -> ``(v_pred, probe_logits)``."""
        out = self.run(
            "denoise_step",
            {
                "latents": latents,
                "timesteps": timesteps,
                "actions": actions,
                "action_valid": action_valid,
                "epsilon": epsilon,
            },
        )
        return out["v_pred"], out["probe_logits"]

    def predict_step(
        self,
        context: np.ndarray,
        actions: np.ndarray,
        action_valid: np.ndarray,
        epsilon: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic predictor+probe -> ``(future [1,H,C,h,w], probe_logits [1,H,C,h,w])``."""
        out = self.run(
            "predict_step",
            {
                "context": context,
                "actions": actions,
                "action_valid": action_valid,
                "epsilon": epsilon,
            },
        )
        return out["future"], out["probe_logits"]

    def zero_inputs(self, graph: str) -> dict[str, np.ndarray]:
        """Zero inputs of the decision shapes (warm-up)."""
        m = self.meta
        c, h, w = m.latent_shape
        f = m.num_frames
        shapes: dict[str, tuple[int, ...]] = {
            "frames": (m.context_length, 3, *m.image_size),
            "context": (1, m.context_length, c, h, w),
            "timesteps": (1, f),
            "actions": (1, f, m.action_dim),
            "action_valid": (1, f),
            "epsilon": (1, f),
        }
        shapes["latents"] = (m.horizon, c, h, w) if graph == "decoder" else (1, f, c, h, w)
        return {
            k: np.zeros(shapes[k], dtype=np.int64 if k == "timesteps" else np.float32)
            for k in GRAPH_INPUTS[graph]
        }

    def warmup(self, iterations: int = 2) -> dict[str, float]:
        """Run every graph ``iterations`` times (first-call allocations, lazy kernel selection,
        torch.compile) so that the first real decision is not the slow one. Returns the last
        call's ms per graph."""
        times: dict[str, float] = {}
        for graph in self.graphs:
            feed = self.zero_inputs(graph)
            for _ in range(max(1, iterations)):
                t0 = time.perf_counter()
                self.run(graph, feed)
                times[graph] = (time.perf_counter() - t0) * 1e3
        logger.debug("%s warm-up: %s", self.name, {g: round(t, 2) for g, t in times.items()})
        return times

    def check_parity(
        self,
        reference: InferenceBackend,
        examples: Mapping[str, Mapping[str, np.ndarray]],
        atol: float,
        rtol: float,
    ) -> dict[str, float]:
        """Compare this backend with ``reference`` on ``examples`` (``{graph: inputs}``); raise
        :class:`BackendUnavailable` naming the graph/output when outside the tolerance.
        Why at load time: a backend that loads but computes garbage (bad engine, wrong binding,
        fp16 overflow) must be skipped, not trusted."""
        worst: dict[str, float] = {}
        for graph, feed in examples.items():
            if graph not in self.graphs:
                continue
            ref = reference.run(graph, feed)
            got = self.run(graph, feed)
            for out in GRAPH_OUTPUTS[graph]:
                d = float(np.abs(got[out].astype(np.float64) - ref[out]).max())
                scale = float(np.abs(ref[out]).max())
                worst[f"{graph}.{out}"] = d
                if not parity_ok(d, scale, atol, rtol):
                    raise BackendUnavailable(
                        f"parity failed: {graph}.{out} max|diff| {d:.3e} > atol {atol:g} + "
                        f"rtol {rtol:g} * max|ref| {scale:.3e}"
                    )
        return worst
