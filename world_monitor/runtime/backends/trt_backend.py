"""TensorRT backend (TensorRT 10 Python API): FP16 engines built from the exported ONNX, cached by
model hash + GPU + TensorRT version (:mod:`world_monitor.runtime.engine_cache`), executed with
explicit tensor addresses on a CUDA stream, using torch CUDA tensors as the device buffers (torch
is installed wherever this runs, so no pycuda/cuda-python dependency).

``tensorrt`` is imported only when the backend is constructed, never at module import, so the
rest of the runtime imports on machines without it; a missing module, a missing GPU, an engine
that fails to build or to deserialize all raise :class:`BackendUnavailable` with the reason, and
``create_backend`` moves on to the next preference.

Precision: with ``enable_fp16`` the builder may pick FP16 kernels (``BuilderFlag.FP16``,
TensorRT 10's weakly-typed mode; TensorRT 11 removed the flag, hence the clear error there).
Normalisation layers (LayerNorm / GroupNorm, which overflow easily in FP16) are pinned to FP32
when ``fp32_normalization`` is set (default). Inputs/outputs stay FP32 (int64 for timesteps).
Building takes minutes on a large model: it happens once per key, never in a unit test.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.runtime.backends.base import BackendUnavailable, InferenceBackend, ModelMeta
from world_monitor.runtime.engine_cache import EngineCache, EngineKey
from world_monitor.runtime.export import GRAPH_OUTPUTS, verify_export

__all__ = ["DEFAULT_MAX_WORKSPACE_SIZE", "TensorRTBackend"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_WORKSPACE_SIZE = 1 << 30  # 1 GiB: far more than these small graphs need


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"module tensorrt not installed ({exc})") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailable(f"TensorRT >= 10 required, found {trt.__version__}")
    return trt


class TensorRTBackend(InferenceBackend):
    """One TensorRT engine + execution context per exported graph."""

    name = "tensorrt"

    def __init__(
        self,
        onnx_dir: str | Path,
        engines_dir: str | Path,
        model_hash: str | None = None,
        *,
        enable_fp16: bool = True,
        max_workspace_size: int = DEFAULT_MAX_WORKSPACE_SIZE,
        force_engine_update: bool = False,
        engine_file_paths: dict[str, str | Path] | None = None,
        device_id: int = 0,
        fp32_normalization: bool = True,
    ) -> None:
        trt = _import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device (torch.cuda.is_available() is False)")
        if device_id >= torch.cuda.device_count():
            raise BackendUnavailable(
                f"device_id {device_id} but only {torch.cuda.device_count()} CUDA device(s)"
            )
        self.onnx_dir = Path(onnx_dir)
        try:
            record = verify_export(self.onnx_dir, model_hash)
        except (FileNotFoundError, ValueError) as exc:
            raise BackendUnavailable(f"ONNX export unusable: {exc}") from exc
        super().__init__(ModelMeta.from_dict(record))
        self._trt = trt
        self._torch = torch
        self.device = f"cuda:{device_id}"
        self._dev = torch.device(self.device)
        self.gpu_name = torch.cuda.get_device_name(device_id)
        self.trt_version = str(trt.__version__)
        self.precision = "fp16" if enable_fp16 else "tf32"
        self.enable_fp16 = enable_fp16
        self.max_workspace_size = int(max_workspace_size)
        self.fp32_normalization = fp32_normalization
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.cache = EngineCache(engines_dir)
        self.stale = self.cache.find_stale(self.meta.model_hash, self.gpu_name, self.trt_version)
        build_options = {
            "enable_fp16": enable_fp16,
            "max_workspace_size": self.max_workspace_size,
            "fp32_normalization": fp32_normalization,
        }
        paths = engine_file_paths or {}
        unknown = sorted(set(paths) - set(record["graphs"]))
        if unknown:
            raise ValueError(f"engine_file_paths for unknown graphs {unknown}")
        torch.cuda.set_device(device_id)
        self._stream = torch.cuda.Stream(device=self._dev)
        runtime = trt.Runtime(self._logger)
        self.engines: dict[str, Any] = {}
        self.contexts: dict[str, Any] = {}
        self.engine_paths: dict[str, str] = {}
        self.built: dict[str, str] = {}
        self._inputs: dict[str, tuple[str, ...]] = {}
        self._dtypes: dict[str, Any] = {}
        for graph, g in record["graphs"].items():
            key = EngineKey(
                self.meta.model_hash, graph, self.gpu_name, self.trt_version, self.precision
            )
            lookup = self.cache.lookup(
                key,
                g["sha256"],
                force_engine_update=force_engine_update,
                engine_file_path=paths.get(graph),
                build_options=build_options,
            )
            if not lookup.hit:
                logger.warning(
                    "building TensorRT engine for %s (%s); this can take minutes",
                    graph,
                    lookup.reason,
                )
                t0 = time.perf_counter()
                plan = self._build(self.onnx_dir / g["file"], g)
                self.cache.store(
                    lookup,
                    plan,
                    onnx_sha256=g["sha256"],
                    build_options=build_options,
                    build_seconds=time.perf_counter() - t0,
                )
                self.built[graph] = lookup.reason
            try:
                engine = runtime.deserialize_cuda_engine(lookup.engine_path.read_bytes())
            except Exception as exc:  # some TensorRT versions raise instead of returning None
                raise BackendUnavailable(
                    f"TensorRT could not deserialize {lookup.engine_path}: {exc}"
                ) from exc
            if engine is None:
                raise BackendUnavailable(
                    f"TensorRT could not deserialize {lookup.engine_path} (corrupt plan or "
                    "built by another TensorRT; set force_engine_update=True)"
                )
            context = engine.create_execution_context()
            if context is None:
                raise BackendUnavailable(f"TensorRT could not create a context for {graph}")
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            self._inputs[graph] = tuple(
                n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
            )
            for n in names:
                self._dtypes[f"{graph}/{n}"] = self._torch_dtype(engine.get_tensor_dtype(n))
            self.engines[graph] = engine
            self.contexts[graph] = context
            self.engine_paths[graph] = str(lookup.engine_path)

    # ------------------------------------------------------------------ build
    def _build(self, onnx_path: Path, graph_record: dict[str, Any]) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"TensorRT ONNX parser rejected {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.max_workspace_size)
        if self.enable_fp16:
            fp16 = getattr(trt.BuilderFlag, "FP16", None)
            if fp16 is None:
                raise BackendUnavailable(
                    f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (weak typing removed); "
                    "set enable_fp16=False"
                )
            config.set_flag(fp16)
            if self.fp32_normalization:
                self._pin_normalization_fp32(network, config)
        dynamic = {
            name: spec for name, spec in graph_record["inputs"].items() if "dynamic_axis" in spec
        }
        if dynamic:
            profile = builder.create_optimization_profile()
            for name, spec in dynamic.items():
                ax = spec["dynamic_axis"]
                shape = list(spec["shape"])

                def at(n: int, shape: list[int] = shape, axis: int = ax["axis"]) -> tuple[int, ...]:
                    s = list(shape)
                    s[axis] = n
                    return tuple(s)

                profile.set_shape(name, at(ax["min"]), at(ax["opt"]), at(ax["max"]))
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendUnavailable(f"TensorRT engine build failed for {onnx_path} (see log)")
        return bytes(plan)

    def _pin_normalization_fp32(self, network: Any, config: Any) -> None:
        trt = self._trt
        norm = getattr(trt.LayerType, "NORMALIZATION", None)
        prefer = getattr(trt.BuilderFlag, "PREFER_PRECISION_CONSTRAINTS", None)
        if norm is None or prefer is None:
            return
        pinned = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == norm:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
                pinned += 1
        if pinned:
            config.set_flag(prefer)
        logger.info("pinned %d normalisation layers to FP32", pinned)

    def _torch_dtype(self, dt: Any) -> Any:
        trt, torch = self._trt, self._torch
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
        for attr, tdt in (("int64", torch.int64), ("bool", torch.bool), ("int8", torch.int8)):
            if hasattr(trt, attr):
                table[getattr(trt, attr)] = tdt
        if dt not in table:
            raise BackendUnavailable(f"unsupported TensorRT I/O dtype {dt}")
        return table[dt]

    # ------------------------------------------------------------------ run
    @property
    def graphs(self) -> tuple[str, ...]:
        return tuple(self.engines)

    def input_names(self, graph: str) -> tuple[str, ...]:
        return self._inputs[graph]

    def _run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        ctx = self.contexts[graph]
        keep = []
        outputs: dict[str, Any] = {}
        with torch.cuda.stream(self._stream):
            for name, arr in inputs.items():
                t = torch.from_numpy(arr).to(self._dev, dtype=self._dtypes[f"{graph}/{name}"])
                t = t.contiguous()
                keep.append(t)
                if not ctx.set_input_shape(name, tuple(t.shape)):
                    raise ValueError(f"{graph}: input {name} shape {tuple(t.shape)} rejected")
                ctx.set_tensor_address(name, t.data_ptr())
            for name in GRAPH_OUTPUTS[graph]:
                shape = tuple(ctx.get_tensor_shape(name))
                out = torch.empty(shape, dtype=self._dtypes[f"{graph}/{name}"], device=self._dev)
                ctx.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT execute_async_v3 failed for {graph}")
            host = {n: t.float().cpu() for n, t in outputs.items()}
        self._stream.synchronize()
        return {n: t.numpy() for n, t in host.items()}

    @property
    def label(self) -> str:
        return f"{self.name}:{self.precision}"

    def parity_tolerance(self) -> tuple[float, float]:
        """(atol, rtol) for the load-time check: FP16 kernels are ~1e-3 relative per op."""
        return (5e-2, 5e-2) if self.enable_fp16 else (1e-2, 1e-2)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": self.device,
            "gpu_name": self.gpu_name,
            "precision": self.precision,
            "tensorrt_version": self.trt_version,
            "max_workspace_size": self.max_workspace_size,
            "engine_file_paths": dict(self.engine_paths),
            "built_now": dict(self.built),
            "stale_engines": [str(s.engine_path) for s in self.stale],
            "graphs": list(self.graphs),
        }

    def close(self) -> None:
        self.contexts.clear()
        self.engines.clear()
