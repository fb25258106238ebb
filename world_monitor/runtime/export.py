"""ONNX export of the graphs one monitor decision needs, with verified parity against torch.

Why a fixed set of small graphs instead of one "whole rollout" graph: the DDIM loop, the noise and
the scheduler arithmetic stay in Python (:mod:`world_monitor.runtime.engine_rollout`), so every
backend (torch, onnxruntime, TensorRT) runs exactly the same sampler and only the networks are
swapped. The graphs are

===============  ===========================================================  ====================
graph            inputs -> outputs                                            shapes
===============  ===========================================================  ====================
``encoder``      ``frames [N,3,H,W]`` (float, [-1,1]) -> ``latents [N,C,h,w]``  N dynamic (1..k+H)
``denoise_step`` ``latents [1,F,C,h,w], timesteps [1,F] int64,                F = k+H fixed
                 actions [1,F,A], action_valid [1,F], epsilon [1,F]``
                 -> ``v_pred [1,F,C,h,w], probe_logits [1,F,C,h,w]``
``predict_step`` ``context [1,k,C,h,w], actions [1,F,A], action_valid [1,F],   fixed
                 epsilon [1,F]`` -> ``future [1,H,C,h,w], probe_logits [1,H,...]``
``decoder``      ``latents [N,C,h,w]`` -> ``frames [N,3,H,W]``                    N dynamic (1..k+H)
===============  ===========================================================  ====================

Only the leading frame axis of the VAE graphs is dynamic: convolutions/group-norm do not care and
it lets the same graph encode ``k`` context frames or decode ``H`` previews (parity is checked at
two sizes). The transformer graphs are fixed at batch 1 and ``k+H`` frames: that is the only shape
a decision uses, and fixed shapes are what TensorRT optimises best. An FSC probe ignores
``epsilon``, so the exporter drops that input; ``export.json`` lists the inputs each graph really
has and the backends feed only those.

Parity: each exported graph is run in onnxruntime-CPU (fp32) on seeded inputs and compared with
torch; it must satisfy ``max|ort - torch| <= atol + rtol * max|torch|`` per output (defaults
``atol = 1e-4``, ``rtol = 1e-4``; measured diffs are ~1e-6). A failure raises :class:`ExportError`
and nothing is left in the output directory (files are written to a temp dir and moved in last,
``export.json`` after the graphs, so its presence means a complete, verified export).

Layout: ``engines/<model_hash>/onnx/{encoder,denoise_step,predict_step,decoder}.onnx`` +
``export.json`` (shapes, opset, parity numbers, file hashes, torch/onnx/onnxruntime versions).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from world_monitor.models.dynamics import (
    DeterministicPredictor,
    DynamicsConfig,
    DynamicsTransformer,
)
from world_monitor.models.probe import C3Probe, ProbeConfig
from world_monitor.models.rollout import DenoiseStep, PredictStep
from world_monitor.models.vae import FrameVAE, VAEConfig

__all__ = [
    "DEFAULT_OPSET",
    "EXPORT_FORMAT",
    "EXPORT_MANIFEST",
    "GRAPH_INPUTS",
    "GRAPH_NAMES",
    "GRAPH_OUTPUTS",
    "PARITY_ATOL",
    "PARITY_RTOL",
    "ExportError",
    "WorldModelModules",
    "export_bundle",
    "export_onnx",
    "file_sha256",
    "onnx_dir_for",
    "parity_ok",
    "read_export_manifest",
    "verify_export",
]

logger = logging.getLogger(__name__)

GRAPH_NAMES = ("encoder", "denoise_step", "predict_step", "decoder")
GRAPH_INPUTS: dict[str, tuple[str, ...]] = {
    "encoder": ("frames",),
    "denoise_step": ("latents", "timesteps", "actions", "action_valid", "epsilon"),
    "predict_step": ("context", "actions", "action_valid", "epsilon"),
    "decoder": ("latents",),
}
GRAPH_OUTPUTS: dict[str, tuple[str, ...]] = {
    "encoder": ("latents",),
    "denoise_step": ("v_pred", "probe_logits"),
    "predict_step": ("future", "probe_logits"),
    "decoder": ("frames",),
}
DYNAMIC_GRAPHS = ("encoder", "decoder")  # leading frame axis is dynamic
DEFAULT_OPSET = 17
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4
EXPORT_FORMAT = "world_monitor.onnx_export"
EXPORT_VERSION = 1
EXPORT_MANIFEST = "export.json"


class ExportError(RuntimeError):
    """Export or parity verification failed; the message names the graph and the numbers."""


def parity_ok(diff: float, ref_scale: float, atol: float, rtol: float) -> bool:
    """The one parity rule used everywhere: ``max|diff| <= atol + rtol * max|ref|``."""
    return bool(np.isfinite(diff)) and diff <= atol + rtol * ref_scale


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_dir_for(engines_dir: str | Path, model_hash: str) -> Path:
    """``engines/<model_hash>/onnx`` - where :func:`export_onnx` writes by convention."""
    return Path(engines_dir) / model_hash / "onnx"


# ---------------------------------------------------------------------------- graph modules
class _Encoder(nn.Module):
    def __init__(self, vae: FrameVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(frames)


class _Decoder(nn.Module):
    def __init__(self, vae: FrameVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents)


@dataclass
class WorldModelModules:
    """The individual networks a decision needs, plus the window geometry (k, H).

    Why not the ``WorldModel`` container: the runtime must work with any instance (trainer
    outputs, tests, a container from a bundle), so it depends only on the model classes.
    ``dynamics`` (diffusion) and/or ``predictor`` (deterministic) - at least one.
    """

    vae: FrameVAE
    probe: C3Probe
    dynamics: DynamicsTransformer | None = None
    predictor: DeterministicPredictor | None = None
    context_length: int = 2
    horizon: int = 8
    _graphs: dict[str, nn.Module] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.dynamics is None and self.predictor is None:
            raise ValueError("WorldModelModules needs a DynamicsTransformer and/or a predictor")
        if self.context_length < 1 or self.horizon < 1:
            raise ValueError(
                f"context_length ({self.context_length}) and horizon ({self.horizon}) must be >= 1"
            )
        cfg = self.dyn_config
        if self.num_frames > cfg.max_frames:
            raise ValueError(
                f"context_length + horizon = {self.num_frames} > dynamics max_frames "
                f"{cfg.max_frames}"
            )
        expected = (cfg.latent_channels, *cfg.latent_size)
        if tuple(self.vae.config.latent_shape) != expected:
            raise ValueError(
                f"VAE latent shape {self.vae.config.latent_shape} != dynamics latent shape "
                f"{expected}"
            )
        for m in (self.vae, self.probe, self.dynamics, self.predictor):
            if m is not None:
                m.eval()

    # ------------------------------------------------------------------ geometry
    @property
    def dyn_config(self) -> DynamicsConfig:
        net = self.dynamics if self.dynamics is not None else self.predictor
        return net.config  # type: ignore[union-attr]

    @property
    def num_frames(self) -> int:
        return self.context_length + self.horizon

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.vae.config.latent_shape)  # type: ignore[return-value]

    @property
    def image_size(self) -> tuple[int, int]:
        s = self.vae.config.image_size
        return (s, s)

    @property
    def action_dim(self) -> int:
        return self.dyn_config.action_dim

    @property
    def graphs(self) -> tuple[str, ...]:
        """The graphs these modules provide, in :data:`GRAPH_NAMES` order."""
        have = {
            "encoder": True,
            "denoise_step": self.dynamics is not None,
            "predict_step": self.predictor is not None,
            "decoder": True,
        }
        return tuple(g for g in GRAPH_NAMES if have[g])

    def graph_module(self, name: str) -> nn.Module:
        """The ``nn.Module`` computing graph ``name`` (the same one for export and torch runs)."""
        if name not in self.graphs:
            raise KeyError(f"graph {name!r} not available (have {self.graphs})")
        if name not in self._graphs:
            if name == "encoder":
                mod: nn.Module = _Encoder(self.vae)
            elif name == "decoder":
                mod = _Decoder(self.vae)
            elif name == "denoise_step":
                mod = DenoiseStep(self.dynamics, self.probe)  # type: ignore[arg-type]
            else:
                mod = PredictStep(self.predictor, self.probe)  # type: ignore[arg-type]
            self._graphs[name] = mod.eval()
        return self._graphs[name]

    def input_specs(
        self, name: str, n: int | None = None
    ) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{input: (shape, dtype)}`` of graph ``name``; ``n`` = frames for the VAE graphs."""
        c, h, w = self.latent_shape
        k, f, a = self.context_length, self.num_frames, self.action_dim
        ih, iw = self.image_size
        if name == "encoder":
            return {"frames": ((n or k, 3, ih, iw), "float32")}
        if name == "decoder":
            return {"latents": ((n or self.horizon, c, h, w), "float32")}
        common = {
            "actions": ((1, f, a), "float32"),
            "action_valid": ((1, f), "float32"),
            "epsilon": ((1, f), "float32"),
        }
        if name == "denoise_step":
            return {
                "latents": ((1, f, c, h, w), "float32"),
                "timesteps": ((1, f), "int64"),
                **common,
            }
        if name == "predict_step":
            return {"context": ((1, k, c, h, w), "float32"), **common}
        raise KeyError(f"unknown graph {name!r}")

    def example_inputs(
        self, name: str, seed: int = 0, n: int | None = None
    ) -> dict[str, np.ndarray]:
        """Seeded, realistic inputs (used for export tracing, parity checks and warm-up)."""
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        k = self.context_length
        for key, (shape, dtype) in self.input_specs(name, n).items():
            if key == "frames":
                arr = rng.uniform(-1.0, 1.0, shape)
            elif key == "timesteps":
                arr = np.zeros(shape)
                arr[:, k:] = self.dyn_config.num_train_timesteps // 2 + 1
            elif key == "action_valid":
                arr = np.ones(shape)
                arr[:, : max(k - 1, 0)] = 0.0  # context actions unknown: exercises the null path
            elif key == "epsilon":
                arr = np.full(shape, 0.5)
            else:
                arr = rng.standard_normal(shape)
            out[key] = np.ascontiguousarray(arr.astype(dtype))
        return out

    # ------------------------------------------------------------------ identity
    def content_hash(self) -> str:
        """SHA-256 over configs, geometry and every parameter/buffer: the engine-cache key for
        modules that did not come from a bundle (bundles use ``bundle_hash``)."""
        h = hashlib.sha256()
        meta = {
            "vae": self.vae.config.to_dict(),
            "probe": self.probe.config.to_dict(),
            "dynamics": None if self.dynamics is None else self.dynamics.config.to_dict(),
            "predictor": None if self.predictor is None else self.predictor.config.to_dict(),
            "context_length": self.context_length,
            "horizon": self.horizon,
        }
        h.update(json.dumps(meta, sort_keys=True).encode())
        for prefix, mod in (
            ("vae", self.vae),
            ("probe", self.probe),
            ("dynamics", self.dynamics),
            ("predictor", self.predictor),
        ):
            if mod is None:
                continue
            for key, t in sorted(mod.state_dict().items()):
                h.update(f"{prefix}.{key}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def meta(self, model_hash: str) -> dict[str, Any]:
        """What a backend without torch modules needs to drive a rollout (stored in export.json)."""
        return {
            "model_hash": model_hash,
            "context_length": self.context_length,
            "horizon": self.horizon,
            "image_size": list(self.image_size),
            "latent_shape": list(self.latent_shape),
            "action_dim": self.action_dim,
            "dynamics": self.dyn_config.to_dict(),
            "probe_variant": self.probe.config.variant,
            "needs_epsilon": bool(self.probe.needs_epsilon),
        }

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_container(
        cls, model: Any, context_length: int | None = None, horizon: int | None = None
    ) -> WorldModelModules:
        """From any object with ``vae``, ``dynamics`` (DiT or predictor), ``probe`` attributes and
        optionally ``config.context_length``/``config.horizon`` (e.g. ``WorldModel``)."""
        dyn = model.dynamics
        cfg = getattr(model, "config", None)
        k = context_length or getattr(cfg, "context_length", None) or 2
        h = horizon or getattr(cfg, "horizon", None) or 8
        if isinstance(dyn, DeterministicPredictor):
            return cls(model.vae, model.probe, predictor=dyn, context_length=k, horizon=h)
        return cls(model.vae, model.probe, dynamics=dyn, context_length=k, horizon=h)

    @classmethod
    def from_bundle(cls, path: str | Path) -> tuple[WorldModelModules, str]:
        """Modules + ``bundle_hash`` from a validated monitor bundle."""
        from world_monitor.models.bundle import bundle_hash
        from world_monitor.models.world_model import WorldModel

        return cls.from_container(WorldModel.from_bundle(path)), bundle_hash(path)

    @classmethod
    def random(
        cls,
        vae_config: VAEConfig | None = None,
        dyn_config: DynamicsConfig | None = None,
        probe_config: ProbeConfig | None = None,
        *,
        variant: str = "both",
        context_length: int = 2,
        horizon: int = 8,
        seed: int = 0,
        std: float = 0.05,
    ) -> WorldModelModules:
        """Random-weight modules for latency measurements and tests. Zero-initialised layers
        (adaLN-Zero, final layers) get random values too, so no branch is trivially zero and a
        wrong graph cannot hide behind an all-zero output. ``variant``: diffusion |
        deterministic | both."""
        if variant not in ("diffusion", "deterministic", "both"):
            raise ValueError(f"variant must be diffusion|deterministic|both, got {variant!r}")
        torch.manual_seed(seed)
        dcfg = dyn_config or DynamicsConfig()
        vae = FrameVAE(vae_config or VAEConfig())
        probe = C3Probe(probe_config or ProbeConfig.from_dynamics(dcfg))
        dyn = DynamicsTransformer(dcfg) if variant != "deterministic" else None
        pred = DeterministicPredictor(dcfg) if variant != "diffusion" else None
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for mod in (vae, probe, dyn, pred):
                if mod is None:
                    continue
                for p in mod.parameters():
                    if not bool(p.any()):
                        p.copy_(torch.randn(p.shape, generator=gen) * std)
        return cls(
            vae, probe, dynamics=dyn, predictor=pred, context_length=context_length, horizon=horizon
        )


# ---------------------------------------------------------------------------- export
def _versions() -> dict[str, str]:
    import onnx

    out = {"torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        out["onnxruntime"] = "not installed"
    return out


def _torch_outputs(module: nn.Module, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    with torch.inference_mode():
        out = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()))
    out = out if isinstance(out, tuple) else (out,)
    return [o.detach().cpu().numpy() for o in out]


def _export_graph(modules: WorldModelModules, name: str, path: Path, opset: int) -> list[str]:
    """Export one graph; return the input names the ONNX graph really has."""
    import onnx

    module = modules.graph_module(name)
    example = modules.example_inputs(name)
    args = tuple(torch.from_numpy(v) for v in example.values())
    in_names = list(GRAPH_INPUTS[name])
    out_names = list(GRAPH_OUTPUTS[name])
    dynamic_axes = None
    if name in DYNAMIC_GRAPHS:
        dynamic_axes = {in_names[0]: {0: "n"}, out_names[0]: {0: "n"}}
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter is deprecated but is the one measured to give clean opset-17
        # graphs for these modules (docs/measurements.md); its warnings are noise here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=in_names,
            output_names=out_names,
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    have = [i.name for i in model.graph.input]
    optional = {"epsilon"} if not modules.probe.needs_epsilon else set()
    missing = [n for n in in_names if n not in have and n not in optional]
    if missing:
        raise ExportError(f"{name}: inputs {missing} were folded into constants by the exporter")
    return [n for n in in_names if n in have]


def _check_parity(
    modules: WorldModelModules,
    name: str,
    path: Path,
    inputs_used: list[str],
    atol: float,
    rtol: float,
) -> dict[str, Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    sizes: list[int | None] = [None]
    if name in DYNAMIC_GRAPHS:
        sizes = [1, modules.context_length if name == "encoder" else modules.horizon]
    diffs: dict[str, float] = {}
    scales: dict[str, float] = {}
    checked: list[list[int]] = []
    for i, n in enumerate(sizes):
        feed = modules.example_inputs(name, seed=100 + i, n=n)
        ref = _torch_outputs(modules.graph_module(name), feed)
        got = sess.run(list(GRAPH_OUTPUTS[name]), {k: feed[k] for k in inputs_used})
        checked.append(list(next(iter(feed.values())).shape))
        for out_name, r, g in zip(GRAPH_OUTPUTS[name], ref, got, strict=True):
            if r.shape != g.shape:
                raise ExportError(f"{name}.{out_name}: ORT shape {g.shape} != torch {r.shape}")
            d = float(np.abs(g.astype(np.float64) - r).max())
            diffs[out_name] = max(diffs.get(out_name, 0.0), d)
            scales[out_name] = max(scales.get(out_name, 0.0), float(np.abs(r).max()))
    for out_name, d in diffs.items():
        if not parity_ok(d, scales[out_name], atol, rtol):
            raise ExportError(
                f"{name}.{out_name}: parity failed, max|ort - torch| = {d:.3e} > "
                f"atol {atol:g} + rtol {rtol:g} * max|torch| {scales[out_name]:.3e} ({path})"
            )
    return {"max_abs_diff": diffs, "max_abs_ref": scales, "checked_input_shapes": checked}


def export_onnx(
    modules: WorldModelModules,
    out_dir: str | Path,
    *,
    model_hash: str | None = None,
    graphs: Iterable[str] | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = PARITY_ATOL,
    rtol: float = PARITY_RTOL,
) -> dict[str, Any]:
    """Export ``graphs`` (default: all the modules provide) to ``out_dir`` and verify parity.

    Returns the ``export.json`` content. Raises :class:`ExportError` (and leaves ``out_dir``
    untouched) when an export or a parity check fails.
    """
    model_hash = model_hash or modules.content_hash()
    names = tuple(graphs) if graphs is not None else modules.graphs
    unknown = [g for g in names if g not in modules.graphs]
    if unknown:
        raise ExportError(f"graphs {unknown} not available from these modules ({modules.graphs})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        **modules.meta(model_hash),
        "opset": opset,
        "exporter": "torch.onnx.export(dynamo=False)",
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tolerance": {
            "atol": atol,
            "rtol": rtol,
            "rule": "per output: max|ort_cpu - torch| <= atol + rtol * max|torch| (fp32)",
        },
        "graphs": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        for name in names:
            path = tmp / f"{name}.onnx"
            try:
                used = _export_graph(modules, name, path, opset)
            except ExportError:
                raise
            except Exception as exc:  # exporter errors come in many types; name the graph
                raise ExportError(f"{name}: ONNX export failed: {exc}") from exc
            parity = _check_parity(modules, name, path, used, atol, rtol)
            specs = modules.input_specs(name)
            inputs = {}
            for key in used:
                shape, dtype = specs[key]
                entry: dict[str, Any] = {"shape": list(shape), "dtype": dtype}
                if name in DYNAMIC_GRAPHS:
                    opt = modules.context_length if name == "encoder" else modules.horizon
                    entry["dynamic_axis"] = {
                        "axis": 0,
                        "min": 1,
                        "opt": opt,
                        "max": modules.num_frames,
                    }
                inputs[key] = entry
            record["graphs"][name] = {
                "file": path.name,
                "sha256": file_sha256(path),
                "inputs": inputs,
                "outputs": list(GRAPH_OUTPUTS[name]),
                "parity": parity,
            }
            worst = max(parity["max_abs_diff"].values())
            logger.info(
                "exported %s (parity max|diff| %.2e, tolerance atol %g rtol %g)",
                name,
                worst,
                atol,
                rtol,
            )
        for name in names:
            os.replace(tmp / f"{name}.onnx", out / f"{name}.onnx")
        manifest = out / EXPORT_MANIFEST
        tmp_manifest = tmp / EXPORT_MANIFEST
        tmp_manifest.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp_manifest, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("ONNX export of %s written to %s", model_hash[:12], out)
    return record


def read_export_manifest(onnx_dir: str | Path) -> dict[str, Any]:
    """Read and sanity-check ``export.json``; raises ``FileNotFoundError``/``ValueError``."""
    path = Path(onnx_dir) / EXPORT_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX export at {onnx_dir} ({EXPORT_MANIFEST} missing)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path}: not a world_monitor ONNX export manifest")
    if record.get("version") != EXPORT_VERSION:
        raise ValueError(f"{path}: unsupported export version {record.get('version')!r}")
    return record


def verify_export(onnx_dir: str | Path, model_hash: str | None = None) -> dict[str, Any]:
    """``export.json`` of ``onnx_dir`` after checking it belongs to ``model_hash`` and that every
    listed ONNX file exists with the recorded SHA-256 (a truncated copy or a file from another
    export is caught here, before a session tries to parse it).

    Raises ``FileNotFoundError`` or ``ValueError`` with the offending path.
    """
    record = read_export_manifest(onnx_dir)
    if model_hash is not None and record.get("model_hash") != model_hash:
        raise ValueError(
            f"{Path(onnx_dir) / EXPORT_MANIFEST}: export is for model {str(record.get('model_hash'))[:12]}, "
            f"expected {model_hash[:12]} (stale export; re-export)"
        )
    for name, g in record.get("graphs", {}).items():
        path = Path(onnx_dir) / g["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file of graph {name!r} is missing")
        digest = file_sha256(path)
        if digest != g["sha256"]:
            raise ValueError(
                f"{path}: SHA-256 {digest[:12]} != recorded {g['sha256'][:12]} (corrupt or modified)"
            )
    return record


def export_bundle(
    bundle: str | Path, engines_dir: str | Path = "engines", opset: int = DEFAULT_OPSET
) -> Path:
    """Export a monitor bundle's graphs to ``engines/<bundle_hash>/onnx`` (the CLI entry)."""
    modules, model_hash = WorldModelModules.from_bundle(bundle)
    out = onnx_dir_for(engines_dir, model_hash)
    export_onnx(modules, out, model_hash=model_hash, opset=opset)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="export a monitor bundle's graphs to ONNX")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--engines-dir", type=Path, default=Path("engines"))
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("%s", export_bundle(args.bundle, args.engines_dir, args.opset))


if __name__ == "__main__":
    main()
