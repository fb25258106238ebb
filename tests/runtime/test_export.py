"""ONNX export: every graph exported, parity with torch verified, failures leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from world_monitor.models.dynamics import DynamicsConfig
from world_monitor.models.probe import ProbeConfig
from world_monitor.models.vae import VAEConfig
from world_monitor.runtime import export as export_mod
from world_monitor.runtime.export import (
    EXPORT_MANIFEST,
    GRAPH_NAMES,
    PARITY_ATOL,
    ExportError,
    WorldModelModules,
    export_onnx,
    onnx_dir_for,
    verify_export,
)

K, H = 2, 4


def tiny_modules(seed: int = 0, variant: str = "both", probe: str = "cs_bc") -> WorldModelModules:
    vcfg = VAEConfig(image_size=32, block_out_channels=(32,), norm_num_groups=8)
    dcfg = DynamicsConfig(latent_size=(8, 8), dim=32, depth=2, heads=2, max_frames=12)
    return WorldModelModules.random(
        vcfg,
        dcfg,
        ProbeConfig.from_dynamics(dcfg, variant=probe),
        variant=variant,
        context_length=K,
        horizon=H,
        seed=seed,
    )


@pytest.fixture(scope="module")
def modules() -> WorldModelModules:
    torch.set_num_threads(1)
    return tiny_modules()


@pytest.fixture(scope="module")
def exported(modules: WorldModelModules, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = onnx_dir_for(tmp_path_factory.mktemp("engines"), modules.content_hash())
    export_onnx(modules, out)
    return out


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_writes_all_graphs_and_manifest(modules: WorldModelModules, exported: Path) -> None:
    record = json.loads((exported / EXPORT_MANIFEST).read_text())
    assert set(record["graphs"]) == set(GRAPH_NAMES)
    assert record["opset"] == 17
    assert record["model_hash"] == modules.content_hash()
    assert exported.parts[-1] == "onnx" and exported.parts[-2] == modules.content_hash()
    assert {"torch", "onnx", "onnxruntime"} <= set(record["versions"])
    assert record["context_length"] == K and record["horizon"] == H
    for name, g in record["graphs"].items():
        assert (exported / f"{name}.onnx").is_file()
        for out, diff in g["parity"]["max_abs_diff"].items():
            assert diff <= PARITY_ATOL, (name, out, diff)
    dn = record["graphs"]["denoise_step"]["inputs"]
    assert dn["latents"]["shape"] == [1, K + H, 4, 8, 8]
    assert dn["timesteps"]["dtype"] == "int64"
    assert record["graphs"]["encoder"]["inputs"]["frames"]["dynamic_axis"]["max"] == K + H
    assert not [p for p in exported.iterdir() if p.name.startswith(".export-")]


@pytest.mark.parametrize("graph", GRAPH_NAMES)
def test_parity_on_fresh_inputs(modules: WorldModelModules, exported: Path, graph: str) -> None:
    sess = _session(exported / f"{graph}.onnx")
    feed = modules.example_inputs(graph, seed=123)
    with torch.inference_mode():
        ref = modules.graph_module(graph)(*(torch.from_numpy(v) for v in feed.values()))
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})
    for r, g in zip(ref, got, strict=True):
        assert g.shape == tuple(r.shape)
        assert np.abs(g - r.numpy()).max() <= 1e-4


@pytest.mark.parametrize("n", [1, K + H])
def test_vae_graphs_have_dynamic_frame_axis(
    modules: WorldModelModules, exported: Path, n: int
) -> None:
    for graph in ("encoder", "decoder"):
        feed = modules.example_inputs(graph, seed=5, n=n)
        out = _session(exported / f"{graph}.onnx").run(None, feed)[0]
        with torch.inference_mode():
            ref = modules.graph_module(graph)(torch.from_numpy(next(iter(feed.values()))))
        assert out.shape[0] == n
        assert np.abs(out - ref.numpy()).max() <= 1e-4


def test_fsc_probe_graph_has_no_epsilon(tmp_path: Path) -> None:
    mods = tiny_modules(variant="diffusion", probe="fsc")
    record = export_onnx(mods, tmp_path, graphs=["denoise_step"])
    assert "epsilon" not in record["graphs"]["denoise_step"]["inputs"]
    assert set(record["graphs"]) == {"denoise_step"}


def test_parity_failure_raises_and_leaves_nothing(
    modules: WorldModelModules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_mod._torch_outputs

    def wrong(module: torch.nn.Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [o + 1.0 for o in real(module, inputs)]  # as if the graph computed something else

    monkeypatch.setattr(export_mod, "_torch_outputs", wrong)
    with pytest.raises(ExportError, match="parity failed"):
        export_onnx(modules, tmp_path, graphs=["encoder"])
    assert list(tmp_path.iterdir()) == []


def test_unavailable_graph_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="predict_step"):
        export_onnx(tiny_modules(variant="diffusion"), tmp_path, graphs=["predict_step"])


def test_verify_export_detects_corruption_and_stale_hash(
    modules: WorldModelModules, exported: Path, tmp_path: Path
) -> None:
    assert verify_export(exported, modules.content_hash())["opset"] == 17
    with pytest.raises(ValueError, match="stale export"):
        verify_export(exported, "0" * 64)
    copy = tmp_path / "onnx"
    copy.mkdir()
    for p in exported.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    (copy / "decoder.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="corrupt or modified"):
        verify_export(copy)
    (copy / "decoder.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="decoder"):
        verify_export(copy)
    with pytest.raises(FileNotFoundError, match="export.json"):
        verify_export(tmp_path)


def test_content_hash_tracks_weights() -> None:
    a, b = tiny_modules(seed=0), tiny_modules(seed=0)
    assert a.content_hash() == b.content_hash()
    with torch.no_grad():
        next(b.probe.parameters()).add_(1e-3)
    assert a.content_hash() != b.content_hash()


def test_modules_validate_geometry() -> None:
    m = tiny_modules()
    with pytest.raises(ValueError, match="max_frames"):
        WorldModelModules(m.vae, m.probe, dynamics=m.dynamics, context_length=4, horizon=10)
    with pytest.raises(ValueError, match="needs"):
        WorldModelModules(m.vae, m.probe)
