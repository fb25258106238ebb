"""Inference backends behind one interface, and :func:`create_backend` (ordered fallback).

Why a preference list with a report instead of "use the best available": on a robot the operator
must know *which* engine runs the safety monitor and *why* a faster one did not load (missing
module, no GPU, failed build, parity failure). :func:`create_backend` tries each backend in
order, checks a loaded backend against eager torch on seeded inputs (when torch modules are
given), warms it up, and returns it with a :class:`BackendReport`; if nothing loads it raises
:class:`BackendError` listing every reason (fail fast at start-up, never at the first decision).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from world_monitor.runtime.backends.base import (
    BackendAttempt,
    BackendError,
    BackendReport,
    BackendUnavailable,
    InferenceBackend,
    ModelMeta,
)
from world_monitor.runtime.export import (
    ExportError,
    WorldModelModules,
    export_onnx,
    onnx_dir_for,
    read_export_manifest,
)

__all__ = [
    "BACKENDS",
    "BackendAttempt",
    "BackendError",
    "BackendReport",
    "BackendUnavailable",
    "InferenceBackend",
    "ModelMeta",
    "create_backend",
]

logger = logging.getLogger(__name__)

BACKENDS = ("tensorrt", "onnxruntime", "torch")
_OPTIONS: dict[str, frozenset[str]] = {
    "torch": frozenset({"device", "compile", "num_threads"}),
    "onnxruntime": frozenset(
        {
            "providers",
            "intra_op_num_threads",
            "inter_op_num_threads",
            "allow_spinning",
            "device_id",
            "enable_fp16",
            "max_workspace_size",
        }
    ),
    "tensorrt": frozenset(
        {
            "enable_fp16",
            "max_workspace_size",
            "force_engine_update",
            "engine_file_paths",
            "device_id",
            "fp32_normalization",
        }
    ),
}


def _pick(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k in _OPTIONS[name]}


def create_backend(
    preference: Sequence[str] = BACKENDS,
    modules: WorldModelModules | None = None,
    engines_dir: str | Path = "engines",
    *,
    bundle: str | Path | None = None,
    model_hash: str | None = None,
    onnx_dir: str | Path | None = None,
    export_missing: bool = False,
    verify: bool = True,
    warmup: bool = True,
    **opts: Any,
) -> tuple[InferenceBackend, BackendReport]:
    """Load the first backend of ``preference`` that works; return it with the load report.

    Sources: ``modules`` (torch networks; needed by the torch backend, the parity check and
    ``export_missing``), or ``bundle`` (a monitor bundle path: modules + ``bundle_hash``), or just
    ``onnx_dir``/``model_hash`` for the ONNX-based backends. ONNX graphs are read from
    ``onnx_dir`` (default ``engines/<model_hash>/onnx``); with ``export_missing`` and modules, a
    missing export is written there first (seconds, unlike a TensorRT build).

    ``opts`` (Isaac ROS names where they exist): torch ``device``, ``compile``, ``num_threads``;
    onnxruntime ``providers``, ``intra_op_num_threads``, ``inter_op_num_threads``; TensorRT
    ``enable_fp16``, ``max_workspace_size``, ``force_engine_update``, ``engine_file_paths``
    (``{graph: path}``), ``fp32_normalization``; both GPU paths ``device_id``. Unknown names or
    backends raise ``ValueError`` immediately (misconfiguration is not a fallback reason).
    """
    pref = list(preference)
    bad = [p for p in pref if p not in BACKENDS]
    if bad or not pref:
        raise ValueError(f"unknown backend(s) {bad} in preference {pref}; choose from {BACKENDS}")
    known = frozenset().union(*_OPTIONS.values())
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown backend option(s) {unknown}; known: {sorted(known)}")
    if modules is None and bundle is not None:
        modules, bhash = WorldModelModules.from_bundle(bundle)
        model_hash = model_hash or bhash
    if model_hash is None and modules is not None:
        model_hash = modules.content_hash()
    if onnx_dir is None:
        if model_hash is None:
            raise ValueError("create_backend needs modules, bundle, model_hash or onnx_dir")
        onnx_dir = onnx_dir_for(engines_dir, model_hash)
    onnx_dir = Path(onnx_dir)

    report = BackendReport(preference=pref)
    reference: InferenceBackend | None = None
    export_failed: str | None = None
    for name in pref:
        t0 = time.perf_counter()
        backend: InferenceBackend | None = None
        try:
            if name == "torch":
                if modules is None:
                    raise BackendUnavailable("no torch modules given (pass modules= or bundle=)")
                from world_monitor.runtime.backends.torch_backend import TorchBackend

                backend = TorchBackend(modules, model_hash, **_pick(name, opts))
            else:
                if export_failed is not None:
                    raise BackendUnavailable(export_failed)
                if export_missing and modules is not None and not _has_export(onnx_dir):
                    try:
                        export_onnx(modules, onnx_dir, model_hash=model_hash)
                    except ExportError as exc:
                        export_failed = f"ONNX export failed: {exc}"
                        raise BackendUnavailable(export_failed) from exc
                if name == "onnxruntime":
                    from world_monitor.runtime.backends.ort_backend import OrtBackend

                    ort_opts = _pick(name, opts)
                    if model_hash is not None:  # the TensorRT EP (if present) caches here
                        ort_opts.setdefault(
                            "trt_cache_dir", Path(engines_dir) / model_hash / "ort_trt"
                        )
                    backend = OrtBackend(onnx_dir, model_hash, **ort_opts)
                else:
                    from world_monitor.runtime.backends.trt_backend import TensorRTBackend

                    backend = TensorRTBackend(
                        onnx_dir, engines_dir, model_hash, **_pick(name, opts)
                    )
                if verify and modules is not None:
                    if reference is None:
                        from world_monitor.runtime.backends.torch_backend import TorchBackend

                        reference = TorchBackend(modules, model_hash)
                    examples = {g: modules.example_inputs(g, seed=7) for g in backend.graphs}
                    atol, rtol = backend.parity_tolerance()
                    backend.check_parity(reference, examples, atol, rtol)
            if warmup:
                backend.warmup()
        except BackendUnavailable as exc:
            reason = str(exc)
            # an engine this machine does not have (no tensorrt on a CPU box) is the normal
            # fallback, not a problem: said at INFO, the loaded backend's line follows
            level = logging.INFO if "not installed" in reason else logging.WARNING
        except Exception as exc:  # an unexpected failure is still a reason to fall back, named
            logger.exception("backend %s failed to load", name)
            reason = f"{type(exc).__name__}: {exc}"
            level = logging.WARNING
        else:
            desc = backend.describe()
            detail = f"{desc.get('device')}, {desc.get('precision')}"
            report.attempts.append(BackendAttempt(name, True, detail, time.perf_counter() - t0))
            report.loaded = name
            report.description = desc
            logger.info("%s", report.summary())
            return backend, report
        if backend is not None:
            backend.close()
        report.attempts.append(BackendAttempt(name, False, reason, time.perf_counter() - t0))
        logger.log(level, "backend %s skipped: %s", name, reason)
    raise BackendError("no inference backend could be loaded", report.attempts)


def _has_export(onnx_dir: Path) -> bool:
    try:
        read_export_manifest(onnx_dir)
    except (FileNotFoundError, ValueError):
        return False
    return True
