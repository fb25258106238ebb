"""Offline replay throughput: how much faster than real time a recorded bag goes through the monitor.

    python benchmarks/replay.py [--bundle BUNDLE (default: the shipped one)] [--episodes 3]
                                [--backend onnxruntime]

Why this exists: offline replay (``world-monitor replay``) is how recorded episodes are audited,
so its speed decides how many hours of robot data can be screened per hour (product target:
>= 20x real time for a 10 Hz camera). The script exports a few simulated test episodes of the
dataset (in-distribution and shifted) to MCAP bags with ``export_episode_bag``, replays each with
``replay_bag`` (writing the output bag, as the CLI does), and prints:

* **x real time** = recorded duration (image messages / 10 Hz) / replay wall time, and
  decisions/s;
* a **baseline measured in the same run**: ``Monitor.assess`` called directly on the same
  decision points (frames and chunks from the episode, no bag I/O, no session, no output bag),
  so the replay overhead (ratio replay / direct) is visible;
* the **bound the model latency puts on replay**: with one decision per action chunk and a chunk
  per camera frame, one recorded second costs ``decisions per recorded second x latency`` of
  compute, so replay cannot exceed ``1 / that`` x real time on this backend, whatever the bag
  code does. Computed from the latency measured here, not assumed.

The monitor is loaded once and injected (``replay_bag(monitor=...)``), so model loading (and a
first-use ONNX export) is reported separately and not counted in any throughput.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from world_monitor.defaults import default_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper module
from bench_data import resolve_data  # noqa: E402
from hostinfo import cpu_model, load_avg, load_warning  # noqa: E402

TARGET_X_REALTIME = 20.0
CAMERA_HZ = 10.0


def _f(x: float | None, nd: int = 1) -> str:
    return "nan" if x is None or not math.isfinite(float(x)) else f"{float(x):.{nd}f}"


def pick_episodes(data: Path, n: int) -> list[dict[str, Any]]:
    """``n`` test episodes: about half in-distribution, the rest one per shift family (round
    robin), so replay is timed on both kinds of input (alerts publish extra output)."""
    from world_monitor.data import EpisodeDataset

    test = EpisodeDataset(data).select(split="test")
    ids = [r for r in test.index if r["shift"] is None]
    by_family: dict[str, list[Any]] = {}
    for r in test.index:
        if r["shift"] is not None:
            by_family.setdefault(r["shift"], []).append(r)
    shifted = []
    depth = 0
    while any(depth < len(v) for v in by_family.values()):
        for fam in sorted(by_family):
            if depth < len(by_family[fam]):
                shifted.append(by_family[fam][depth])
        depth += 1
    n_id = n - min(len(shifted), n // 2)
    chosen = ids[:n_id] + shifted[: n - min(n_id, len(ids))]
    if not chosen:
        raise SystemExit(f"{data}: no test episodes")
    return [dict(r) for r in chosen[:n]]


def measure(
    bundle: Path,
    data: Path,
    episodes: int = 3,
    backend: str = "onnxruntime",
    threads: int = 1,
    engines_dir: Path | None = None,
) -> dict[str, Any]:
    """Export, replay and baseline-time ``episodes`` episodes; returns the numbers printed."""
    import torch

    from world_monitor.data import EpisodeDataset
    from world_monitor.data.bag import export_episode_bag
    from world_monitor.data.chunks import decision_points
    from world_monitor.replay.replay import replay_bag
    from world_monitor.runtime.monitor import Monitor

    torch.set_num_threads(threads)
    res: dict[str, Any] = {"load_start": load_avg(), "rows": []}
    ds = EpisodeDataset(data)
    tmp = Path(tempfile.mkdtemp(prefix="wm_replay_bench_"))
    try:
        opts = {"num_threads": threads} if backend == "torch" else {"intra_op_num_threads": threads}
        t0 = time.perf_counter()
        monitor = Monitor.from_bundle(
            bundle, backend, engines_dir=engines_dir or tmp / "engines", **opts
        )
        res["load_s"] = time.perf_counter() - t0
        res["backend"] = monitor.backend_name
        res["monitor"] = {
            "k": monitor.context_length,
            "H": monitor.horizon,
            "image_size": list(monitor.image_size),
        }
        # one untimed decision so neither measurement pays first-call costs
        ep0 = ds.load(pick_episodes(data, 1)[0]["id"])
        p0 = next(decision_points(ep0, monitor.context_length, monitor.horizon))
        monitor.assess(p0.frames, p0.chunk, 0.0)
        for rec in pick_episodes(data, episodes):
            ep = ds.load(rec["id"])
            bag = tmp / "bags" / rec["id"]
            t0 = time.perf_counter()
            export_episode_bag(ep, bag, storage="mcap", horizon=monitor.horizon)
            export_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = replay_bag(
                bag, tmp / "out" / rec["id"], monitor=monitor, write_bag=True, progress=False
            )
            replay_s = time.perf_counter() - t0
            s = result.summary
            n_img = int(s["messages"]["by_topic"][s["image_topic"]]["count"])
            # assessments = decisions that ran the model (a decision before the context is full
            # is an input error and costs nothing)
            n_dec = int(s["session"]["counts"].get("assessments", 0))
            # baseline: the same decision points straight into Monitor.assess (without context
            # actions, as the session calls it, so both run exactly the same computation)
            t0 = time.perf_counter()
            n_direct = 0
            for p in decision_points(ep, monitor.context_length, monitor.horizon):
                monitor.assess(p.frames, p.chunk, float(ep.stamps[p.t]))
                n_direct += 1
            direct_s = time.perf_counter() - t0
            recorded_s = n_img / CAMERA_HZ
            res["rows"].append(
                {
                    "episode": rec["id"],
                    "shift": rec["shift"] or "in-distribution",
                    "frames": n_img,
                    "recorded_s": recorded_s,
                    "export_s": export_s,
                    "replay_s": replay_s,
                    "decisions": n_dec,
                    "alerts": len(s["session"].get("alerts", [])),
                    "direct_s": direct_s,
                    "direct_decisions": n_direct,
                }
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["load_end"] = load_avg()
    return res


def print_report(res: dict[str, Any], command: str, threads: int) -> None:
    """Per-episode table, totals with the replay/direct ratio, the latency bound and the target."""
    import onnxruntime
    import torch

    m = res["monitor"]
    size = "x".join(map(str, m["image_size"]))
    print(f"# command: {command}")
    print(f"# host: {cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"# load average (1/5/15 min): start {res['load_start']} | end {res['load_end']}")
    if (warning := load_warning()) is not None:
        print(warning)
    print(f"# torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, threads {threads}")
    print(f"# bundle: {res['bundle']} ({res['bundle_info']})")
    print(
        f"# backend: {res['backend']} (loaded in {_f(res['load_s'])} s, not counted); "
        f"input {size}, k={m['k']}, H={m['H']}; camera {CAMERA_HZ:.0f} Hz; one decision per chunk"
    )
    print("\n## replay_bag (MCAP in, MCAP + summary out) vs Monitor.assess on the same points")
    print(
        "| episode | shift | frames | recorded s | export s | replay s | x real time | "
        "decisions | decisions/s | direct assess s | replay/direct |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        print(
            f"| {r['episode']} | {r['shift']} | {r['frames']} | {_f(r['recorded_s'])} | "
            f"{_f(r['export_s'], 2)} | {_f(r['replay_s'], 2)} | "
            f"{_f(r['recorded_s'] / r['replay_s'], 2)} | {r['decisions']} | "
            f"{_f(r['decisions'] / r['replay_s'], 2)} | {_f(r['direct_s'], 2)} | "
            f"{_f(r['replay_s'] / r['direct_s'], 2)} |"
        )
    t = res["totals"]
    print(
        f"| **total** | | {t['frames']} | {_f(t['recorded_s'])} | {_f(t['export_s'], 2)} | "
        f"{_f(t['replay_s'], 2)} | {_f(t['x_realtime'], 2)} | {t['decisions']} | "
        f"{_f(t['decisions_per_s'], 2)} | {_f(t['direct_s'], 2)} | {_f(t['overhead'], 2)} |"
    )
    print("\n## what bounds it")
    print("| quantity | value |")
    print("|---|---|")
    print(f"| decisions per recorded second | {_f(t['decisions_per_rec_s'], 2)} |")
    print(f"| direct Monitor.assess latency (mean, ms) | {_f(t['assess_ms'])} |")
    print(f"| model compute per recorded second (s) | {_f(t['compute_per_rec_s'], 3)} |")
    print(f"| bound from model latency (x real time, 1 process) | {_f(t['bound_x'], 2)} |")
    print(f"| measured replay (x real time) | {_f(t['x_realtime'], 2)} |")
    print(
        f"| latency per decision needed for {TARGET_X_REALTIME:.0f}x at this decision rate (ms) "
        f"| {_f(t['needed_ms'], 2)} |"
    )
    print(f"| or: decide every N frames at this latency (N) | {t['needed_every_n']} |")
    met = t["x_realtime"] >= TARGET_X_REALTIME
    print(
        f"\n# target: replay >= {TARGET_X_REALTIME:.0f}x real time: "
        f"{'MET' if met else 'NOT MET'} ({_f(t['x_realtime'], 2)}x)"
    )
    if not met:
        print(
            f"# why: {_f(t['decisions_per_rec_s'], 1)} decisions per recorded second x "
            f"{_f(t['assess_ms'])} ms per decision = {_f(t['compute_per_rec_s'], 2)} s of model "
            f"compute per recorded second -> at most {_f(t['bound_x'], 2)}x real time on one "
            f"process with {res['backend']}, before any replay overhead "
            f"(measured overhead x{_f(t['overhead'], 2)}). {TARGET_X_REALTIME:.0f}x needs "
            f"<= {_f(t['needed_ms'], 2)} ms per decision, or one decision every "
            f"{t['needed_every_n']} frames at this latency, or parallel replay across "
            "processes/cores or a GPU."
        )


def totals(res: dict[str, Any]) -> dict[str, Any]:
    """Aggregate the per-episode rows and derive the latency bound (see module docstring)."""
    rows = res["rows"]
    t: dict[str, Any] = {
        k: sum(r[k] for r in rows)
        for k in (
            "frames",
            "recorded_s",
            "export_s",
            "replay_s",
            "decisions",
            "direct_s",
            "direct_decisions",
        )
    }
    t["x_realtime"] = t["recorded_s"] / t["replay_s"]
    t["decisions_per_s"] = t["decisions"] / t["replay_s"]
    t["overhead"] = t["replay_s"] / t["direct_s"]
    t["assess_ms"] = 1e3 * t["direct_s"] / max(t["direct_decisions"], 1)
    t["decisions_per_rec_s"] = t["decisions"] / t["recorded_s"]
    t["compute_per_rec_s"] = t["decisions_per_rec_s"] * t["assess_ms"] / 1e3
    t["bound_x"] = 1.0 / t["compute_per_rec_s"] if t["compute_per_rec_s"] > 0 else math.inf
    budget_s = 1.0 / TARGET_X_REALTIME  # wall seconds available per recorded second
    t["needed_ms"] = 1e3 * budget_s / max(t["decisions_per_rec_s"], 1e-9)
    per_frame_dec = t["decisions_per_rec_s"] / CAMERA_HZ  # decisions per camera frame
    affordable = budget_s / (t["assess_ms"] / 1e3) / CAMERA_HZ  # decisions per frame we can pay
    t["needed_every_n"] = (
        max(1, math.ceil(per_frame_dec / affordable)) if affordable > 0 else math.inf
    )
    return t


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", type=Path, default=default_bundle(), help="monitor bundle (default: shipped)"
    )
    parser.add_argument("--data", type=Path, default=Path("datasets/default"))
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--backend", default="onnxruntime", help="torch | onnxruntime | tensorrt")
    parser.add_argument("--threads", type=int, default=1, help="torch / ORT intra-op threads")
    parser.add_argument(
        "--engines-dir",
        type=Path,
        default=Path("engines"),
        help="ONNX/engine cache (keyed by bundle hash; exported on first use)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.bundle.is_dir():
        raise SystemExit(f"{args.bundle}: no bundle here (pass --bundle)")
    from world_monitor.models.bundle import load_bundle
    from world_monitor.models.world_model import WorldModel

    model = WorldModel.from_bundle(load_bundle(args.bundle))
    n_params = sum(p.numel() for p in model.parameters())
    argv_ = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/replay.py " + " ".join(shlex.quote(a) for a in argv_)
    res = measure(
        args.bundle,
        resolve_data(args.data, bundle=args.bundle),
        args.episodes,
        args.backend,
        args.threads,
        args.engines_dir,
    )
    res["bundle"] = str(args.bundle)
    mc = model.config
    res["bundle_info"] = (
        f"{mc.variant}, {n_params / 1e6:.2f} M params, {mc.rollout.mode} "
        f"K={mc.rollout.num_inference_steps}"
    )
    res["totals"] = totals(res)
    print_report(res, command.strip(), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
