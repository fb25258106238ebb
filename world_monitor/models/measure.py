"""Latency/size measurements of the default world-model networks, plus a one-off ONNX parity check.

Run ``python -m world_monitor.models.measure [--onnx-dir DIR] [--repeats N]``; it logs one table
(eager torch, 1 thread, batch 1, 64x64 frames, k=2 context, H=8) and, when onnxruntime is
installed, the ORT-CPU latency and max |torch - ORT| of the exported per-step modules.
Weights are random (zero-init layers perturbed so that no branch is skipped): latency does not
depend on training. This is a measurement helper, not the exporter (that belongs to runtime/).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from world_monitor.models.dynamics import (
    DeterministicPredictor,
    DynamicsConfig,
    DynamicsTransformer,
)
from world_monitor.models.probe import C3Probe, ProbeConfig
from world_monitor.models.rollout import (
    DenoiseStep,
    PredictStep,
    RolloutConfig,
    WorldModelRollout,
)
from world_monitor.models.vae import FrameVAE, VAEConfig

logger = logging.getLogger(__name__)

CONTEXT, HORIZON = 2, 8


def _perturb(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            if not bool(p.any()):
                p.normal_(0.0, 0.1)
    return module.eval()


def _ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _params(*modules: nn.Module) -> float:
    return sum(p.numel() for m in modules for p in m.parameters()) / 1e6


def _onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: list[str],
    path: Path,
    repeats: int,
) -> tuple[float, float, float]:
    """Export with the TorchScript exporter (opset 17); return (ORT ms, max abs diff, max |ref|)."""
    import numpy as np
    import onnxruntime as ort

    torch.onnx.export(module, args, str(path), input_names=names, opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    used = {i.name for i in sess.get_inputs()}
    missing = [n for n in names if n not in used]
    if missing:
        raise RuntimeError(f"{path.name}: inputs {missing} were folded into constants")
    feed = {n: a.numpy() for n, a in zip(names, args, strict=True) if n in used}
    with torch.no_grad():
        ref = module(*args)
    ref = ref if isinstance(ref, tuple) else (ref,)
    out = sess.run(None, feed)
    diff = max(float(np.abs(o - r.numpy()).max()) for o, r in zip(out, ref, strict=True))
    scale = max(float(r.abs().max()) for r in ref)
    return _ms(lambda: sess.run(None, feed), repeats), diff, scale


def measure(repeats: int = 20, onnx_dir: Path | None = None) -> list[tuple[str, str, str, str]]:
    """Returns rows ``(what, params, torch ms, ort ms / parity)`` and logs them as a table."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = FrameVAE(VAEConfig()).eval()
    dcfg = DynamicsConfig()
    dyn = _perturb(DynamicsTransformer(dcfg))
    pred = _perturb(DeterministicPredictor(dcfg))
    probe = _perturb(C3Probe(ProbeConfig.from_dynamics(dcfg)))
    step = DenoiseStep(dyn, probe).eval()
    pstep = PredictStep(pred, probe).eval()
    f = CONTEXT + HORIZON
    frames = torch.rand(1, CONTEXT, 3, 64, 64) * 2 - 1
    frame1 = frames[:, 0]
    lat1 = torch.randn(1, *VAEConfig().latent_shape)
    ctx = torch.randn(1, CONTEXT, *VAEConfig().latent_shape)
    seq = torch.randn(1, f, *VAEConfig().latent_shape)
    ts = torch.zeros(1, f, dtype=torch.long)
    ts[:, CONTEXT:] = 999
    acts = torch.randn(1, f, dcfg.action_dim)
    valid = torch.ones(1, f)
    eps = torch.full((1, f), 0.5)
    chunk = torch.randn(1, HORIZON, dcfg.action_dim)

    rows: list[tuple[str, str, str, str]] = []
    ort_ms: dict[str, str] = {}
    if onnx_dir is not None:
        for key, mod, args, names in (
            ("encode", _Enc(vae), (frame1,), ["frames"]),
            ("decode", _Dec(vae), (lat1,), ["latents"]),
            (
                "denoise",
                _Denoise(dyn),
                (seq, ts, acts, valid),
                ["latents", "timesteps", "actions", "action_valid"],
            ),
            (
                "step",
                step,
                (seq, ts, acts, valid, eps),
                ["latents", "timesteps", "actions", "action_valid", "epsilon"],
            ),
            (
                "predict",
                pstep,
                (ctx, acts, valid, eps),
                ["context", "actions", "action_valid", "epsilon"],
            ),
        ):
            ms, diff, scale = _onnx(mod, args, names, onnx_dir / f"{key}.onnx", repeats)
            ort_ms[key] = f"{ms:.1f} (max|diff| {diff:.1e} of max|out| {scale:.1e})"

    with torch.no_grad():
        rows.append(
            (
                "VAE encode 1 frame",
                f"{_params(vae):.2f}M",
                f"{_ms(lambda: vae.encode(frame1), repeats):.1f}",
                ort_ms.get("encode", "-"),
            )
        )
        rows.append(
            (
                "VAE encode k=2 frames",
                "",
                f"{_ms(lambda: vae.encode(frames), repeats):.1f}",
                "-",
            )
        )
        rows.append(
            (
                "VAE decode 1 frame",
                "",
                f"{_ms(lambda: vae.decode(lat1), repeats):.1f}",
                ort_ms.get("decode", "-"),
            )
        )
        rows.append(
            (
                "VAE decode H=8 frames",
                "",
                f"{_ms(lambda: vae.decode(seq[:, :HORIZON]), repeats):.1f}",
                "-",
            )
        )
        rows.append(
            (
                "denoiser step (F=10)",
                f"{_params(dyn):.2f}M",
                f"{_ms(lambda: dyn(seq, ts, acts, valid), repeats):.1f}",
                ort_ms.get("denoise", "-"),
            )
        )
        rows.append(
            (
                "denoiser+probe step (F=10)",
                f"+{_params(probe):.2f}M",
                f"{_ms(lambda: step(seq, ts, acts, valid, eps), repeats):.1f}",
                ort_ms.get("step", "-"),
            )
        )
        rows.append(
            (
                "deterministic+probe (k=2,H=8)",
                f"{_params(pred):.2f}M",
                f"{_ms(lambda: pstep(ctx, acts, valid, eps), repeats):.1f}",
                ort_ms.get("predict", "-"),
            )
        )
        variants = (("joint", True), ("autoregressive", True), ("autoregressive", False))
        for mode, cache in variants:
            for k in (4, 10):
                cfg = RolloutConfig(mode=mode, num_inference_steps=k, kv_cache=cache)
                roll = WorldModelRollout(probe, dyn, pred, vae, cfg)
                gen = torch.Generator()
                n = max(3, repeats // (1 if cache else 4))
                ms = _ms(
                    lambda roll=roll, gen=gen: roll(ctx, chunk, generator=gen.manual_seed(0)),
                    n,
                )
                label = f"rollout {mode} K={k}" + ("" if cache or mode == "joint" else " no cache")
                rows.append((label, "", f"{ms:.1f}", "-"))
        roll = WorldModelRollout(probe, dyn, pred, vae, RolloutConfig(mode="deterministic"))
        rows.append(
            (
                "rollout deterministic",
                "",
                f"{_ms(lambda: roll(ctx, chunk), repeats):.1f}",
                "-",
            )
        )

    header = ("what (batch 1, 1 thread)", "params", "torch ms", "ORT-CPU ms")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, *rows]:
        logger.info(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return rows


class _Denoise(nn.Module):
    """Denoiser only (the non-final DDIM steps run without the probe)."""

    def __init__(self, dyn: DynamicsTransformer) -> None:
        super().__init__()
        self.dyn = dyn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.dyn(*args)[0]


class _Enc(nn.Module):
    def __init__(self, vae: FrameVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(frames)


class _Dec(nn.Module):
    def __init__(self, vae: FrameVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--onnx-dir", type=Path, default=None, help="export here (default: a temp dir)"
    )
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.no_onnx:
        measure(args.repeats, None)
    elif args.onnx_dir is not None:
        args.onnx_dir.mkdir(parents=True, exist_ok=True)
        measure(args.repeats, args.onnx_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            measure(args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
