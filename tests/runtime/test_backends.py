"""Backends: onnxruntime matches torch, ordered fallback with reasons, fail-fast, engine cache.

TensorRT is exercised only where ``tensorrt`` and a CUDA GPU exist, and even there no engine is
built (conventions: never build a TensorRT engine inside a unit test): the tests parse the ONNX
graphs with TensorRT's parser and check that a bad cached plan is rejected with a clear reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from world_monitor.models.dynamics import DynamicsConfig
from world_monitor.models.probe import ProbeConfig
from world_monitor.models.vae import VAEConfig
from world_monitor.runtime.backends import BackendError, create_backend
from world_monitor.runtime.backends.ort_backend import OrtBackend, ordered_providers
from world_monitor.runtime.backends.torch_backend import TorchBackend
from world_monitor.runtime.engine_cache import EngineCache, EngineKey
from world_monitor.runtime.export import (
    GRAPH_NAMES,
    GRAPH_OUTPUTS,
    WorldModelModules,
    export_onnx,
    onnx_dir_for,
)

K, H = 2, 4


def tiny_modules(seed: int = 0) -> WorldModelModules:
    vcfg = VAEConfig(image_size=32, block_out_channels=(32,), norm_num_groups=8)
    dcfg = DynamicsConfig(latent_size=(8, 8), dim=32, depth=2, heads=2, max_frames=12)
    return WorldModelModules.random(
        vcfg, dcfg, ProbeConfig.from_dynamics(dcfg), context_length=K, horizon=H, seed=seed
    )


@pytest.fixture(scope="module")
def modules() -> WorldModelModules:
    torch.set_num_threads(1)
    return tiny_modules()


@pytest.fixture(scope="module")
def engines(modules: WorldModelModules, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engines")
    export_onnx(modules, onnx_dir_for(root, modules.content_hash()))
    return root


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tensorrt`` fail, so a fallback test never builds an engine on a GPU box."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def _copy_export(engines: Path, modules: WorldModelModules, dst_root: Path) -> Path:
    src = onnx_dir_for(engines, modules.content_hash())
    dst = onnx_dir_for(dst_root, modules.content_hash())
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


# ---------------------------------------------------------------------------- parity
@pytest.mark.parametrize("graph", GRAPH_NAMES)
def test_ort_matches_torch(modules: WorldModelModules, engines: Path, graph: str) -> None:
    ort_b = OrtBackend(onnx_dir_for(engines, modules.content_hash()), modules.content_hash())
    torch_b = TorchBackend(modules)
    feed = modules.example_inputs(graph, seed=11)
    got, ref = ort_b.run(graph, feed), torch_b.run(graph, feed)
    for out in GRAPH_OUTPUTS[graph]:
        assert got[out].shape == ref[out].shape
        assert np.abs(got[out] - ref[out]).max() <= 1e-4, out


def test_ort_describe_reports_provider_and_threads(
    modules: WorldModelModules, engines: Path
) -> None:
    b = OrtBackend(onnx_dir_for(engines, modules.content_hash()), intra_op_num_threads=2)
    d = b.describe()
    assert d["intra_op_num_threads"] == 2
    assert d["providers"]["denoise_step"][0] == "CPUExecutionProvider"
    assert d["device"] == "cpu" and d["precision"] == "fp32"
    assert b.label == "onnxruntime:CPUExecutionProvider"


def test_provider_order_and_options() -> None:
    avail = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    got = ordered_providers(avail, enable_fp16=True, max_workspace_size=1 << 28)
    assert [n for n, _ in got] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert got[0][1]["trt_fp16_enable"] is True
    assert got[0][1]["trt_max_workspace_size"] == 1 << 28
    assert [n for n, _ in ordered_providers(["CPUExecutionProvider"])] == ["CPUExecutionProvider"]


# ---------------------------------------------------------------------------- fallback
def test_default_preference_loads_onnxruntime_and_says_why_not_tensorrt(
    modules: WorldModelModules, engines: Path, no_tensorrt: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="world_monitor.runtime.backends"):
        backend, report = create_backend(modules=modules, engines_dir=engines)
    # no tensorrt on a CPU machine is the normal fallback: said, but not as a warning
    skipped = [r for r in caplog.records if r.getMessage().startswith("backend tensorrt skip")]
    assert [r.levelname for r in skipped] == ["INFO"]
    assert backend.name == "onnxruntime" and report.loaded == "onnxruntime"
    first = report.attempts[0]
    assert first.name == "tensorrt" and not first.loaded
    assert "tensorrt not installed" in first.reason
    assert report.attempts[1].loaded
    assert report.description["providers"]["encoder"] == ["CPUExecutionProvider"]
    assert "skipped" in report.summary()


def test_missing_onnx_falls_back_to_torch(
    modules: WorldModelModules, tmp_path: Path, no_tensorrt: None
) -> None:
    backend, report = create_backend(modules=modules, engines_dir=tmp_path)
    assert backend.name == "torch"
    reasons = {a.name: a.reason for a in report.attempts}
    assert "export.json missing" in reasons["onnxruntime"]


def test_corrupt_onnx_falls_back_to_torch(
    modules: WorldModelModules, engines: Path, tmp_path: Path
) -> None:
    onnx = _copy_export(engines, modules, tmp_path)
    (onnx / "denoise_step.onnx").write_bytes(b"\x00garbage")
    backend, report = create_backend(["onnxruntime", "torch"], modules, tmp_path)
    assert backend.name == "torch"
    assert "corrupt or modified" in report.attempts[0].reason
    # a broken file whose manifest was "fixed" up is still caught, by onnxruntime itself
    record = json.loads((onnx / "export.json").read_text())
    from world_monitor.runtime.export import file_sha256

    record["graphs"]["denoise_step"]["sha256"] = file_sha256(onnx / "denoise_step.onnx")
    (onnx / "export.json").write_text(json.dumps(record))
    backend, report = create_backend(["onnxruntime", "torch"], modules, tmp_path)
    assert backend.name == "torch"
    assert "could not load" in report.attempts[0].reason


def test_parity_failure_is_a_fallback_reason(
    modules: WorldModelModules, engines: Path, tmp_path: Path
) -> None:
    other = tiny_modules(seed=1)  # different weights, pointed at the first model's export
    onnx = onnx_dir_for(engines, modules.content_hash())
    backend, report = create_backend(
        ["onnxruntime", "torch"], other, tmp_path, onnx_dir=onnx, model_hash=modules.content_hash()
    )
    assert backend.name == "torch"
    assert "parity failed" in report.attempts[0].reason


def test_export_missing_exports_then_loads(modules: WorldModelModules, tmp_path: Path) -> None:
    backend, report = create_backend(["onnxruntime"], modules, tmp_path, export_missing=True)
    assert backend.name == "onnxruntime"
    assert (onnx_dir_for(tmp_path, modules.content_hash()) / "export.json").is_file()


def test_nothing_loads_raises_backend_error_with_every_reason(
    tmp_path: Path, no_tensorrt: None
) -> None:
    with pytest.raises(BackendError) as info:
        create_backend(["tensorrt", "onnxruntime", "torch"], None, tmp_path, model_hash="ab" * 32)
    msg = str(info.value)
    assert "tensorrt: module tensorrt not installed" in msg
    assert "onnxruntime: ONNX export unusable" in msg
    assert "torch: no torch modules given" in msg
    assert [a.name for a in info.value.attempts] == ["tensorrt", "onnxruntime", "torch"]


def test_misconfiguration_fails_fast(modules: WorldModelModules, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend(["tensorrt", "openvino"], modules, tmp_path)
    with pytest.raises(ValueError, match="unknown backend option"):
        create_backend(["torch"], modules, tmp_path, enable_fp17=True)


def test_torch_backend_describes_itself(modules: WorldModelModules) -> None:
    backend, report = create_backend(["torch"], modules, warmup=False)
    d = backend.describe()
    assert d["mode"] == "eager" and d["device"] == "cpu"
    assert backend.label == "torch:cpu"
    assert report.loaded == "torch"


# ---------------------------------------------------------------------------- engine cache
def _key(**kw: str) -> EngineKey:
    base = {
        "model_hash": "a" * 64,
        "graph": "denoise_step",
        "gpu_name": "NVIDIA H200",
        "trt_version": "10.9.0",
        "precision": "fp16",
    }
    base.update(kw)
    return EngineKey(**base)  # type: ignore[arg-type]


def test_engine_key_changes_with_each_component() -> None:
    base = _key()
    for change in (
        {"model_hash": "b" * 64},
        {"gpu_name": "NVIDIA A100"},
        {"trt_version": "10.10.0"},
        {"precision": "tf32"},
    ):
        other = _key(**change)
        assert other.digest != base.digest
        assert EngineCache("e").engine_path(other) != EngineCache("e").engine_path(base)


def test_engine_cache_hit_miss_force_and_stale(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = _key()
    opts = {"enable_fp16": True, "max_workspace_size": 1 << 30}
    miss = cache.lookup(key, "onnx1", build_options=opts)
    assert not miss.hit and "no engine" in miss.reason
    path = cache.store(miss, b"PLAN", onnx_sha256="onnx1", build_options=opts, build_seconds=1.0)
    assert path.parts[-3:-1] == ("trt", "nvidia-h200_trt10.9.0_fp16")
    assert json.loads(cache.sidecar_path(path).read_text())["key"]["gpu_name"] == "NVIDIA H200"
    assert cache.lookup(key, "onnx1", build_options=opts).hit
    forced = cache.lookup(key, "onnx1", build_options=opts, force_engine_update=True)
    assert not forced.hit and "force_engine_update" in forced.reason
    assert "ONNX file changed" in cache.lookup(key, "onnx2", build_options=opts).reason
    changed = cache.lookup(key, "onnx1", build_options={**opts, "max_workspace_size": 1})
    assert "build options changed" in changed.reason
    path.write_bytes(b"PLA")
    assert "truncated" in cache.lookup(key, "onnx1", build_options=opts).reason
    # an explicit engine_file_path built elsewhere is checked against its sidecar too
    explicit = tmp_path / "my.plan"
    explicit.write_bytes(b"PLAN")
    (tmp_path / "my.plan.json").write_text(
        cache.sidecar_path(path).read_text().replace("NVIDIA H200", "NVIDIA A100")
    )
    other = cache.lookup(key, "onnx1", engine_file_path=explicit, build_options=opts)
    assert not other.hit and "gpu_name changed" in other.reason
    stale = cache.find_stale(key.model_hash, "NVIDIA L4", "10.9.0")
    assert len(stale) == 1 and "NVIDIA L4" in stale[0].reasons[0]
    assert cache.find_stale(key.model_hash, "NVIDIA H200", "10.9.0") == []


# ---------------------------------------------------------------------------- TensorRT
def _require_trt_gpu() -> object:
    trt = pytest.importorskip("tensorrt", reason="TensorRT tests need the tensorrt module")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT tests need a CUDA GPU (torch.cuda.is_available() is False)")
    return trt


def test_tensorrt_parses_every_exported_graph(modules: WorldModelModules, engines: Path) -> None:
    trt = _require_trt_gpu()
    onnx = onnx_dir_for(engines, modules.content_hash())
    logger = trt.Logger(trt.Logger.WARNING)  # type: ignore[attr-defined]
    for graph in GRAPH_NAMES:
        builder = trt.Builder(logger)  # type: ignore[attr-defined]
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)  # type: ignore[attr-defined]
        ok = parser.parse_from_file(str(onnx / f"{graph}.onnx"))
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        assert ok, (graph, errors)


def test_tensorrt_rejects_a_corrupt_cached_plan(
    modules: WorldModelModules, engines: Path, tmp_path: Path
) -> None:
    trt = _require_trt_gpu()
    from world_monitor.runtime.backends.base import BackendUnavailable
    from world_monitor.runtime.backends.trt_backend import TensorRTBackend

    onnx = _copy_export(engines, modules, tmp_path)
    record = json.loads((onnx / "export.json").read_text())
    cache = EngineCache(tmp_path)
    opts = {"enable_fp16": True, "max_workspace_size": 1 << 30, "fp32_normalization": True}
    for graph, g in record["graphs"].items():  # valid sidecars, garbage plans: no build happens
        key = EngineKey(
            modules.content_hash(),
            graph,
            torch.cuda.get_device_name(0),
            str(trt.__version__),  # type: ignore[attr-defined]
            "fp16",
        )
        look = cache.lookup(key, g["sha256"], build_options=opts)
        cache.store(look, b"garbage", onnx_sha256=g["sha256"], build_options=opts, build_seconds=0)
    with pytest.raises(BackendUnavailable, match="could not deserialize"):
        TensorRTBackend(onnx, tmp_path, modules.content_hash())
