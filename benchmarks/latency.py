"""Latency of one monitor decision, torch eager vs onnxruntime-CPU, against a reference sampler.

    python benchmarks/latency.py [--bundle BUNDLE (default: the shipped one)] [--repeats 50] [--warmup 5]
                                 [--threads 1]

Why this exists: the monitor runs once per policy decision, so its per-decision latency decides
whether it fits the control loop (product target: onnxruntime-CPU p50 <= 100 ms per decision on
the 2-core target machine). Absolute milliseconds on a shared box are noisy, so every number
that matters is also printed as a ratio against a baseline measured in the same run:

* **torch eager vs onnxruntime-CPU**: ``Monitor.assess`` (encode, rollout, signals, risk, total
  from ``Assessment.latency_ms``, plus the wall clock around the call) on real decision points of
  the dataset's in-distribution test split, same inputs for both backends; throughput
  (decisions/s) and peak RSS per backend. Each backend runs in its own child process, so the
  peak RSS is that backend's alone (the process high-water mark never goes down) and one
  backend's warm caches cannot help the other.
* **reference-style sampler**: frame-by-frame ("autoregressive") DDIM with 10 steps in eager
  torch (``WorldModelRollout``, the paper's scheme) on the same inputs, next to our joint sampler
  with the bundle's steps in the same eager code, and the speed-up of our default decision over
  it. Speed alone is not the point: the ECE of both samplers on a few dozen held-out ID windows
  is printed too (computed with ``training/evaluate.py``'s machinery, the ``evaluate-model``
  numbers), so a faster sampler that is worse calibrated would be visible.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.defaults import default_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper module
from bench_data import resolve_data  # noqa: E402
from hostinfo import cpu_model, load_avg, load_warning  # noqa: E402

TARGET_P50_MS = 100.0
REFERENCE_STEPS = 10
RESULT_TAG = "@@LATENCY_RESULT@@ "
STAGES = ("encode", "rollout", "signals", "risk", "total")


# ---------------------------------------------------------------------------- host / bundle info
def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentiles(xs: list[float]) -> tuple[float, float]:
    """(p50, p95) by the nearest-rank rule on the sorted samples."""
    ys = sorted(xs)
    if not ys:
        return math.nan, math.nan
    p95 = ys[min(len(ys) - 1, round(0.95 * (len(ys) - 1)))]
    return float(np.median(ys)), float(p95)


def bundle_info(bundle: Path) -> dict[str, Any]:
    """Model size and shapes of a bundle (latency depends on them, so the table names them)."""
    from world_monitor.models.bundle import load_bundle
    from world_monitor.models.world_model import WorldModel

    b = load_bundle(bundle)
    model = WorldModel.from_bundle(b)
    mc = model.config
    params = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("vae", "dynamics", "probe")
    }
    return {
        "path": str(bundle),
        "variant": mc.variant,
        "params": params,
        "params_total": sum(params.values()),
        "dynamics": {k: mc.dynamics.to_dict().get(k) for k in ("dim", "depth", "heads")}
        if hasattr(mc.dynamics, "to_dict")
        else {},
        "image_size": list(b.image_size),
        "context_length": mc.context_length,
        "horizon": mc.horizon,
        "latent_shape": list(mc.latent_shape),
        "mode": mc.rollout.mode,
        "steps": mc.rollout.num_inference_steps,
        "epsilon": mc.rollout.epsilon,
        "calibrated": bool(b.calibration),
    }


# ---------------------------------------------------------------------------- inputs
def collect_points(
    data: Path, context: int, horizon: int, n: int, stride: int = 4
) -> dict[str, np.ndarray]:
    """``n`` decision points from the in-distribution test episodes (round robin over episodes,
    every ``stride``-th frame), as arrays: the same inputs for every backend and sampler."""
    from world_monitor.data import EpisodeDataset
    from world_monitor.data.chunks import decision_points

    ds = EpisodeDataset(data)
    recs = ds.select(split="test", shift=None).index
    if not recs:
        raise SystemExit(f"{data}: no in-distribution test episodes")
    per_ep = [
        list(decision_points(ds.load(r["id"]), context, horizon, stride)) for r in recs[: max(n, 1)]
    ]
    points = []
    depth = 0
    while len(points) < n and any(depth < len(p) for p in per_ep):
        for p in per_ep:
            if depth < len(p) and len(points) < n:
                points.append(p[depth])
        depth += 1
    if len(points) < n:  # tiny datasets: repeat the points we have
        points = (points * (n // max(len(points), 1) + 1))[:n]
    return {
        "frames": np.stack([p.frames for p in points]),
        "chunk": np.stack([p.chunk for p in points]),
        "context_actions": np.stack([p.context_actions for p in points]),
    }


# ---------------------------------------------------------------------------- one role, one process
def run_role(
    role: str, bundle: Path, points: Path, warmup: int, repeats: int, threads: int, engines: Path
) -> dict[str, Any]:
    """Time one backend (``torch`` | ``onnxruntime``) or the eager samplers (``reference``).

    Runs inside a fresh child process (see the module docstring), returns JSON-ready numbers.
    """
    import torch

    torch.set_num_threads(threads)
    data = np.load(points)
    frames, chunks, ctx_actions = data["frames"], data["chunk"], data["context_actions"]
    n = min(len(frames), warmup + repeats)
    rss0 = peak_rss_mib()
    if role in ("torch", "onnxruntime"):
        from world_monitor.runtime.monitor import Monitor

        opts = {"num_threads": threads} if role == "torch" else {"intra_op_num_threads": threads}
        t0 = time.perf_counter()
        monitor = Monitor.from_bundle(bundle, role, engines_dir=engines, **opts)
        load_s = time.perf_counter() - t0
        stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "wall")}
        for i in range(n):
            t0 = time.perf_counter()
            a = monitor.assess(frames[i], chunks[i], float(i), ctx_actions[i])
            wall = (time.perf_counter() - t0) * 1e3
            if i < warmup:
                continue
            for s in STAGES:
                stages[s].append(float(a.latency_ms.get(s, math.nan)))
            stages["wall"].append(wall)
        return {
            "role": role,
            "backend": monitor.backend_name,
            "load_s": load_s,
            "n": len(stages["wall"]),
            "stages": {s: percentiles(v) for s, v in stages.items()},
            "throughput": len(stages["wall"]) / (sum(stages["wall"]) / 1e3),
            "rss_after_import_mib": rss0,
            "peak_rss_mib": peak_rss_mib(),
        }
    if role != "reference":
        raise ValueError(f"unknown role {role!r}")
    from world_monitor.data.normalize import frames_to_float
    from world_monitor.models.rollout import RolloutConfig
    from world_monitor.models.world_model import WorldModel

    model = WorldModel.from_bundle(bundle).eval()
    rc = model.config.rollout
    samplers = {
        "reference": RolloutConfig(
            mode="autoregressive",
            num_inference_steps=REFERENCE_STEPS,
            epsilon=rc.epsilon,
            kv_cache=True,
        ),
        "joint": RolloutConfig(
            mode="joint", num_inference_steps=rc.num_inference_steps, epsilon=rc.epsilon
        ),
    }
    out: dict[str, Any] = {"role": role, "samplers": {}}
    for name, cfg in samplers.items():
        rollout = model.rollout(cfg).eval()
        walls: list[float] = []
        with torch.no_grad():
            for i in range(n):
                t0 = time.perf_counter()
                x = torch.from_numpy(frames_to_float(frames[i])).permute(0, 3, 1, 2).contiguous()
                ctx = model.vae.encode(x[None])[0]
                chunk = torch.from_numpy(model.normalize_actions(chunks[i]))
                ca = torch.from_numpy(model.normalize_actions(ctx_actions[i]))
                gen = torch.Generator().manual_seed(i)
                rollout(ctx, chunk, context_actions=ca, generator=gen)
                if i >= warmup:
                    walls.append((time.perf_counter() - t0) * 1e3)
        out["samplers"][name] = {
            "mode": cfg.mode,
            "steps": cfg.num_inference_steps,
            "n": len(walls),
            "p50": percentiles(walls)[0],
            "p95": percentiles(walls)[1],
            "throughput": len(walls) / (sum(walls) / 1e3),
        }
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def _spawn(args: list[str]) -> dict[str, Any]:
    """Run ``run_role`` in a child interpreter (this file, ``--_role``) and parse its result."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    raise RuntimeError(
        f"benchmark child {args[:2]} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    )


# ---------------------------------------------------------------------------- ECE of both samplers
def sampler_ece(
    bundle: Path, data: Path, windows: int, threads: int, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """ECE/MCE/AUROC (mean over the ε grid, 20 bins) of our default sampler and the reference one
    on the same held-out ID test windows, through ``training/evaluate.py`` (evaluate-model)."""
    import torch

    from world_monitor.data import EpisodeDataset
    from world_monitor.models.bundle import load_bundle
    from world_monitor.models.world_model import WorldModel
    from world_monitor.training import evaluate as ev

    torch.set_num_threads(threads)
    b = load_bundle(bundle)
    ds = EpisodeDataset(data)
    sub = ds.select(split="test", shift=None)
    out: dict[str, dict[str, Any]] = {}
    for name, mode, steps in (
        ("default", None, None),
        ("reference", "autoregressive", REFERENCE_STEPS),
    ):
        model = WorldModel.from_bundle(b).eval()
        opts = ev.EvalOptions(
            windows=windows,
            stride=2,
            batch_size=8,
            seed=seed,
            figures=0,
            num_threads=threads,
            progress=False,
            mode=mode,
            num_inference_steps=steps,
        )
        ev._override_rollout(model, opts)
        mc = model.config
        wins = ev.select_windows(
            sub, mc.context_length + mc.horizon, opts.stride, windows, seed, after_onset=False
        )
        t0 = time.perf_counter()
        split, _ = ev._evaluate_split(model, sub, wins, opts, name, float(mc.rollout.epsilon))
        s = split.summary()
        out[name] = {
            "mode": mc.rollout.mode,
            "steps": mc.rollout.num_inference_steps,
            "n_windows": s["n_windows"],
            "ece": s["ece"],
            "mce": s["mce"],
            "auroc": s["auroc"],
            "seconds": time.perf_counter() - t0,
        }
    return out


# ---------------------------------------------------------------------------- driver + report
def _f(x: float, nd: int = 1) -> str:
    return "nan" if x is None or not math.isfinite(float(x)) else f"{float(x):.{nd}f}"


def measure(
    bundle: Path,
    data: Path,
    repeats: int = 50,
    warmup: int = 5,
    threads: int = 1,
    engines_dir: Path | None = None,
    ref_repeats: int = 20,
    ece_windows: int = 32,
    stride: int = 4,
) -> dict[str, Any]:
    """Everything the report prints, as a dict (the smoke test calls this with tiny settings)."""
    info = bundle_info(bundle)
    res: dict[str, Any] = {"bundle": info, "load_start": load_avg()}
    with tempfile.TemporaryDirectory(prefix="wm_latency_") as tmp:
        pts = Path(tmp) / "points.npz"
        np.savez(
            pts,
            **collect_points(
                data, info["context_length"], info["horizon"], warmup + repeats, stride
            ),
        )
        engines = Path(engines_dir) if engines_dir is not None else Path(tmp) / "engines"
        common = ["--bundle", str(bundle), "--threads", str(threads), "--engines-dir", str(engines)]
        for role in ("torch", "onnxruntime"):
            res[role] = _spawn(
                [
                    "--_role",
                    role,
                    "--_points",
                    str(pts),
                    "--warmup",
                    str(warmup),
                    "--repeats",
                    str(repeats),
                    *common,
                ]
            )
        if info["variant"] == "deterministic":  # one pass, no sampler to compare against
            res["reference"] = None
        else:
            res["reference"] = _spawn(
                [
                    "--_role",
                    "reference",
                    "--_points",
                    str(pts),
                    "--warmup",
                    str(min(warmup, 2)),
                    "--repeats",
                    str(min(repeats, ref_repeats)),
                    *common,
                ]
            )
    use_ece = ece_windows > 0 and res["reference"] is not None
    res["ece"] = sampler_ece(bundle, data, ece_windows, threads) if use_ece else {}
    res["load_end"] = load_avg()
    return res


def _print_samplers(res: dict[str, Any], tr: dict[str, Any], ort: dict[str, Any]) -> None:
    """The reference-sampler comparison and both samplers' calibration (diffusion bundles)."""
    ref = res["reference"]["samplers"]
    base = ref["reference"]["p50"]
    print(
        f"\n## sampler comparison, eager torch encode+rollout (WorldModelRollout), "
        f"{ref['reference']['n']} decisions, same inputs"
    )
    print("| sampler | p50 ms | p95 ms | decisions/s | speed-up vs reference (p50) |")
    print("|---|---|---|---|---|")
    rows = [
        (f"reference: autoregressive K={ref['reference']['steps']} (eager)", ref["reference"]),
        (f"ours: joint K={ref['joint']['steps']} (eager)", ref["joint"]),
    ]
    for label, r in rows:
        print(
            f"| {label} | {_f(r['p50'])} | {_f(r['p95'])} | {_f(r['throughput'], 2)} | "
            f"{_f(base / r['p50'], 2)} |"
        )
    for r in (tr, ort):
        p50, p95 = r["stages"]["wall"]
        print(
            f"| ours: full decision, {r['backend']} | {_f(p50)} | {_f(p95)} | "
            f"{_f(r['throughput'], 2)} | {_f(base / p50, 2)} |"
        )
    ece = res.get("ece") or {}
    if ece:
        print("\n## calibration of both samplers (evaluate-model machinery, ID test windows)")
        print("| sampler | n windows | ECE (mean over eps, 20 bins) | MCE | AUROC | seconds |")
        print("|---|---|---|---|---|---|")
        for name, e in ece.items():
            print(
                f"| {name}: {e['mode']} K={e['steps']} | {e['n_windows']} | {_f(e['ece'], 4)} | "
                f"{_f(e['mce'], 4)} | {_f(e['auroc'], 3)} | {_f(e['seconds'], 1)} |"
            )


def print_report(res: dict[str, Any], command: str, threads: int) -> None:
    """Isaac-ROS-style tables: hardware, input size, backend, p50/p95, throughput, peak memory."""
    import onnxruntime
    import torch

    info = res["bundle"]
    p = info["params"]
    size = "x".join(str(v) for v in info["image_size"])
    print(f"# command: {command}")
    print(f"# host: {cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"# load average (1/5/15 min): start {res['load_start']} | end {res['load_end']}")
    if (warning := load_warning()) is not None:
        print(warning)
    print(f"# torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, threads {threads}")
    print(
        f"# bundle: {info['path']} ({info['variant']}, {info['params_total'] / 1e6:.2f} M params: "
        f"vae {p['vae'] / 1e6:.2f} M, dynamics {p['dynamics'] / 1e6:.2f} M, "
        f"probe {p['probe'] / 1e6:.2f} M; dynamics {info['dynamics']})"
    )
    print(
        f"# input: {size} RGB, k={info['context_length']} context frames, H={info['horizon']}, "
        f"latent {'x'.join(map(str, info['latent_shape']))}, batch 1, sampler "
        f"{info['mode']} K={info['steps']} DDIM steps, eps={info['epsilon']}"
    )
    tr, ort = res["torch"], res["onnxruntime"]
    print(f"\n## one monitor decision (Monitor.assess), {ort['n']} decisions, ms")
    print("| stage | torch eager p50 | p95 | onnxruntime-CPU p50 | p95 | ratio torch/ORT (p50) |")
    print("|---|---|---|---|---|---|")
    for s in (*STAGES, "wall"):
        a, b = tr["stages"][s], ort["stages"][s]
        ratio = a[0] / b[0] if b[0] and math.isfinite(b[0]) and b[0] > 0 else math.nan
        print(f"| {s} | {_f(a[0])} | {_f(a[1])} | {_f(b[0])} | {_f(b[1])} | {_f(ratio, 2)} |")
    print("\n## per backend")
    print("| hardware | input | backend | p50 ms | p95 ms | decisions/s | peak RSS MiB | load s |")
    print("|---|---|---|---|---|---|---|---|")
    hw = f"{cpu_model()} ({threads} thr)"
    for r in (tr, ort):
        p50, p95 = r["stages"]["wall"]
        print(
            f"| {hw} | {size}, H={info['horizon']} | {r['backend']} | {_f(p50)} | {_f(p95)} | "
            f"{_f(r['throughput'], 2)} | {_f(r['peak_rss_mib'], 0)} | {_f(r['load_s'], 1)} |"
        )
    if res["reference"] is None:
        print(
            "\n## sampler comparison: not applicable (deterministic bundle: one pass, no "
            "sampler); its calibration: `world-monitor evaluate-model`"
        )
    else:
        _print_samplers(res, tr, ort)
    p50 = ort["stages"]["wall"][0]
    met = "MET" if p50 <= TARGET_P50_MS else "NOT MET"
    print(
        f"\n# target: onnxruntime-CPU p50 <= {TARGET_P50_MS:.0f} ms per decision: {met} "
        f"(p50 {_f(p50)} ms wall, {threads} intra-op thread(s), load {res['load_end']})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", type=Path, default=default_bundle(), help="monitor bundle (default: shipped)"
    )
    parser.add_argument("--data", type=Path, default=Path("datasets/default"))
    parser.add_argument("--repeats", type=int, default=50, help="timed decisions per backend")
    parser.add_argument("--warmup", type=int, default=5, help="untimed decisions first")
    parser.add_argument("--threads", type=int, default=1, help="torch / ORT intra-op threads")
    parser.add_argument(
        "--engines-dir",
        type=Path,
        default=Path("engines"),
        help="ONNX/engine cache (keyed by bundle hash; exported on first use)",
    )
    parser.add_argument(
        "--ref-repeats", type=int, default=20, help="timed decisions of the reference sampler"
    )
    parser.add_argument(
        "--ece-windows", type=int, default=32, help="ID test windows for the ECE (0: skip)"
    )
    parser.add_argument("--stride", type=int, default=4, help="frames between decision points")
    parser.add_argument("--_role", help=argparse.SUPPRESS)
    parser.add_argument("--_points", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args._role:  # child process: one backend / sampler, result as one JSON line
        r = run_role(
            args._role,
            args.bundle,
            args._points,
            args.warmup,
            args.repeats,
            args.threads,
            args.engines_dir,
        )
        print(RESULT_TAG + json.dumps(r))
        return 0
    if not args.bundle.is_dir():
        raise SystemExit(f"{args.bundle}: no bundle here (pass --bundle)")
    argv_ = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/latency.py " + " ".join(shlex.quote(a) for a in argv_)
    res = measure(
        args.bundle,
        resolve_data(args.data, bundle=args.bundle),
        args.repeats,
        args.warmup,
        args.threads,
        args.engines_dir,
        args.ref_repeats,
        args.ece_windows,
        args.stride,
    )
    print_report(res, command.strip(), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
