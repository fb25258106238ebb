"""Training throughput with DDP: dynamics + probe windows/s at 1 process vs N torchrun processes,
the same global batch and the same CPU thread budget.

    python benchmarks/train_ddp.py [--processes 1,2] [--steps 40] [--batch 16] [--threads 2]

Why: ``world-monitor train ... train.distributed=ddp train.processes=N`` splits every global
batch over N processes (:mod:`world_monitor.training.distributed`); whether that is faster than
one process with N threads depends on the machine, so it is measured, not assumed. The script
generates a small training set with the built-in simulator (seeded, ~10 s; ``--data`` to use
yours), then trains the default model (VAE briefly, it is not what is timed) for ``--steps``
dynamics steps at global batch ``--batch``, once per process count, with ``train.num_threads``
= ``--threads`` shared by the processes (1 process: 2 threads; 2 processes: 1 thread each). The
windows/s is the trainer's own (``metrics.jsonl``, windows of the global batch per second of
the dynamics loop); the ratio is to the 1-process run measured in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper module
from hostinfo import cpu_model, load_avg, load_warning  # noqa: E402


def _dataset(out: Path, episodes: int, seed: int) -> Path:
    from world_monitor.config import load_config
    from world_monitor.data.generate import generate_dataset

    cfg = load_config(
        [
            f"seed={seed}",
            f"data.splits.train={episodes}",
            "data.splits.val=2",
            "data.splits.calib=0",
            "data.splits.test=0",
            "data.shift_test_per_family=0",
        ]
    )
    generate_dataset(cfg, out, workers=1, progress=False)
    return out


def _train(data: Path, run: Path, processes: int, args: argparse.Namespace) -> dict[str, Any]:
    from world_monitor.cli import main

    overrides = [
        f"train.num_threads={args.threads}",
        "train.vae.steps=5",
        "train.vae.eval_every=5",
        "train.latents.stats_frames=256",
        f"train.dynamics.steps={args.steps}",
        f"train.dynamics.batch_size={args.batch}",
        f"train.dynamics.log_every={args.steps}",
        f"train.dynamics.val_every={args.steps}",
        "train.dynamics.val_batches=1",
        f"train.dynamics.ckpt_every={args.steps}",
        *args.overrides,
    ]
    if processes > 1:
        overrides += ["train.distributed=ddp", f"train.processes={processes}"]
    t0 = time.perf_counter()
    rc = main(["train", "--data", str(data), "--out", str(run), "--no-progress", *overrides])
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"training with {processes} process(es) failed (exit {rc})")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["stage"] == "dynamics" and "windows_per_s" in r][-1]
    summary = json.loads((run / "summary.json").read_text())
    return {
        "processes": processes,
        "windows_per_s": float(last["windows_per_s"]),
        "loss": float(last["loss"]),
        "dynamics_s": float(summary["timings_s"]["dynamics"]),
        "wall_s": wall,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--steps", type=int, default=40, help="dynamics steps per run")
    parser.add_argument("--batch", type=int, default=16, help="global batch (windows)")
    parser.add_argument("--threads", type=int, default=2, help="train.num_threads (shared)")
    parser.add_argument("--episodes", type=int, default=24, help="generated training episodes")
    parser.add_argument("--data", type=Path, default=None, help="your dataset instead")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides (e.g. model=...)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        counts = sorted({int(p) for p in args.processes.split(",") if p.strip()})
    except ValueError:
        raise SystemExit(f"--processes {args.processes!r}: expected e.g. 1,2") from None
    if not counts or counts[0] < 1 or any(args.batch % n for n in counts):
        raise SystemExit("--processes: counts >= 1 that divide --batch")
    argv_ = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/train_ddp.py " + " ".join(shlex.quote(a) for a in argv_)
    import torch

    start_load = load_avg()
    tmp = Path(tempfile.mkdtemp(prefix="wm_ddp_bench_"))
    try:
        t0 = time.perf_counter()
        data = args.data or _dataset(tmp / "data", args.episodes, seed=0)
        data_s = time.perf_counter() - t0
        rows = [_train(data, tmp / f"run{n}", n, args) for n in counts]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# command: {command.strip()}")
    print(f"# host: {cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"# load average (1/5/15 min): start {start_load} | end {load_avg()}")
    if (warning := load_warning()) is not None:
        print(warning)
    print(
        f"# torch {torch.__version__}; data: {args.data or f'{args.episodes} generated episodes'} "
        f"({data_s:.0f} s); {args.steps} dynamics steps at global batch {args.batch}; "
        f"train.num_threads={args.threads} shared by the processes; gloo on loopback"
    )
    base = rows[0]["windows_per_s"]
    print(
        "\n| processes | threads each | windows/s | ratio to 1 process | dynamics s | run wall s "
        "| last loss |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["processes"]
        print(
            f"| {n} | {max(1, args.threads // n)} | {r['windows_per_s']:.1f} | "
            f"{r['windows_per_s'] / base:.2f} | {r['dynamics_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['loss']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
