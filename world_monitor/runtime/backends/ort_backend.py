"""onnxruntime backend: the product's CPU path (2-6x faster than eager torch at batch 1, see
docs/measurements.md) and a GPU path through the CUDA / TensorRT execution providers when the
installed onnxruntime has them.

Providers are requested in the order TensorRT EP -> CUDA EP -> CPU EP, filtered by
``onnxruntime.get_available_providers()``; what each session *actually* got
(``InferenceSession.get_providers()``) is what :meth:`describe` reports, because ORT silently
falls back to CPU when a GPU provider fails to initialise.

Threads: ``intra_op_num_threads`` defaults to 1. Measured on the shared 2-core box (default
configs, k=2, H=8, denoise+probe step): 1 thread was as fast or faster than 2 per call, and a
second thread only pays when nothing else runs on the machine, which a robot computer running a
policy, a camera driver and ROS never guarantees (same finding as for torch in
docs/measurements.md). Pass 2 on a dedicated core pair.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.runtime.backends.base import BackendUnavailable, InferenceBackend, ModelMeta
from world_monitor.runtime.export import GRAPH_OUTPUTS, verify_export

__all__ = ["DEFAULT_INTRA_OP_THREADS", "OrtBackend", "ordered_providers"]

logger = logging.getLogger(__name__)

DEFAULT_INTRA_OP_THREADS = 1
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def ordered_providers(
    available: list[str],
    requested: list[str] | None = None,
    *,
    device_id: int = 0,
    enable_fp16: bool = True,
    trt_cache_dir: Path | None = None,
    max_workspace_size: int | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``[(provider, options)]`` in preference order, restricted to what is installed.

    ``requested`` (provider names) overrides the default TensorRT -> CUDA -> CPU order; a
    requested provider that is not available is dropped with a warning (the CPU EP is always
    appended last so a session can always be created).
    """
    order = list(requested) if requested else list(_PREFERRED)
    out: list[tuple[str, dict[str, Any]]] = []
    for name in order:
        if name not in available:
            if requested:
                logger.warning("onnxruntime provider %s requested but not available", name)
            continue
        opts: dict[str, Any] = {}
        if name == "TensorrtExecutionProvider":
            opts = {"device_id": device_id, "trt_fp16_enable": bool(enable_fp16)}
            if trt_cache_dir is not None:
                trt_cache_dir.mkdir(parents=True, exist_ok=True)
                opts["trt_engine_cache_enable"] = True
                opts["trt_engine_cache_path"] = str(trt_cache_dir)
            if max_workspace_size is not None:
                opts["trt_max_workspace_size"] = int(max_workspace_size)
        elif name == "CUDAExecutionProvider":
            opts = {"device_id": device_id}
        out.append((name, opts))
    if not any(n == "CPUExecutionProvider" for n, _ in out):
        out.append(("CPUExecutionProvider", {}))
    return out


class OrtBackend(InferenceBackend):
    """One ``InferenceSession`` per exported graph of ``onnx_dir``."""

    name = "onnxruntime"
    #: InferenceSession.run is thread-safe (onnxruntime's documented guarantee)
    concurrent_runs = True

    def __init__(
        self,
        onnx_dir: str | Path,
        model_hash: str | None = None,
        *,
        providers: list[str] | None = None,
        intra_op_num_threads: int = DEFAULT_INTRA_OP_THREADS,
        inter_op_num_threads: int = 1,
        device_id: int = 0,
        enable_fp16: bool = True,
        max_workspace_size: int | None = None,
        trt_cache_dir: str | Path | None = None,
        allow_spinning: bool = True,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"module onnxruntime not installed ({exc})") from exc
        self.onnx_dir = Path(onnx_dir)
        try:
            record = verify_export(self.onnx_dir, model_hash)
        except (FileNotFoundError, ValueError) as exc:
            raise BackendUnavailable(f"ONNX export unusable: {exc}") from exc
        super().__init__(ModelMeta.from_dict(record))
        self.record = record
        self.intra_op_num_threads = int(intra_op_num_threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_num_threads
        opts.inter_op_num_threads = int(inter_op_num_threads)
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # spinning worker threads cut wake-up latency on idle cores but burn a core that a
        # policy / camera driver needs; switch off when the box is shared
        self.allow_spinning = bool(allow_spinning)
        opts.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if allow_spinning else "0"
        )
        self.available_providers = list(ort.get_available_providers())
        self.provider_request = ordered_providers(
            self.available_providers,
            providers,
            device_id=device_id,
            enable_fp16=enable_fp16,
            trt_cache_dir=None if trt_cache_dir is None else Path(trt_cache_dir),
            max_workspace_size=max_workspace_size,
        )
        self.sessions: dict[str, Any] = {}
        self._inputs: dict[str, tuple[str, ...]] = {}
        for graph, g in record["graphs"].items():
            path = self.onnx_dir / g["file"]
            try:
                sess = ort.InferenceSession(
                    str(path),
                    opts,
                    providers=[n for n, _ in self.provider_request],
                    provider_options=[o for _, o in self.provider_request],
                )
            except Exception as exc:  # ORT raises several exception types for bad files
                raise BackendUnavailable(f"onnxruntime could not load {path}: {exc}") from exc
            self.sessions[graph] = sess
            self._inputs[graph] = tuple(i.name for i in sess.get_inputs())
        first = {g: s.get_providers()[0] for g, s in self.sessions.items()}
        gpu = [p for p in first.values() if p != "CPUExecutionProvider"]
        self.device = f"cuda:{device_id}" if gpu else "cpu"
        trt_fp16 = enable_fp16 and any(p == "TensorrtExecutionProvider" for p in first.values())
        self.precision = "fp16" if trt_fp16 else "fp32"
        self._enable_fp16 = enable_fp16
        if len(set(first.values())) > 1:
            logger.warning("onnxruntime graphs landed on different providers: %s", first)
        logger.debug("onnxruntime sessions: %s", first)

    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self.sessions)

    def input_names(self, graph: str) -> tuple[str, ...]:
        return self._inputs[graph]

    def _run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = list(GRAPH_OUTPUTS[graph])
        out = self.sessions[graph].run(names, inputs)
        return dict(zip(names, out, strict=True))

    @property
    def label(self) -> str:
        first = self.sessions[self.graphs[0]].get_providers()[0] if self.sessions else "none"
        return f"{self.name}:{first}"

    def parity_tolerance(self) -> tuple[float, float]:
        """(atol, rtol) for the load-time parity check: fp32 on CPU is ~1e-6 off torch; GPU
        kernels (TF32 matmuls in the CUDA EP) and the TRT EP's fp16 need looser bounds."""
        if self.precision == "fp16":
            return 5e-2, 5e-2
        if self.device != "cpu":
            return 1e-2, 1e-2
        return 1e-4, 1e-4

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.precision,
            "providers": {g: s.get_providers() for g, s in self.sessions.items()},
            "available_providers": self.available_providers,
            "intra_op_num_threads": self.intra_op_num_threads,
            "allow_spinning": self.allow_spinning,
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "onnx_dir": str(self.onnx_dir),
            "onnxruntime_version": ort.__version__,
            "graphs": list(self.graphs),
        }

    def close(self) -> None:
        self.sessions.clear()
