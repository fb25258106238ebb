"""Fleet replay: speed-up with workers on a local Ray cluster (and a local process pool), the
per-bag overhead of distributing, and a check that the merged result equals one process's.

    python benchmarks/fleet.py [--bundle BUNDLE] [--episodes 16] [--workers 1,2]
                               [--backend onnxruntime]

Why: a fleet's recordings are thousands of bags; ``world-monitor replay BAG... --ray [ADDRESS]``
spreads them over Ray workers (:mod:`world_monitor.fleet`). This measures, on this machine, what
that buys and costs before anyone points it at a real cluster: test episodes (generated in
seconds without ``datasets/default``) are exported as bags with a chunk every 4 frames (the
simulator's re-plan rate), then replayed

* in this process, one bag after another with one model thread (the **reference**: its summaries
  are what every other run must reproduce, and its time is the baseline of the speed-ups);
* with ``replay_bags(workers=N)`` on a local ``spawn`` process pool;
* with ``replay_bags(workers=N, ray_address=...)`` on a local Ray cluster started once here
  (bound to 127.0.0.1; its start-up is timed separately), one CPU and one look-ahead thread
  per worker.

Each run's wall time includes its workers starting and loading the monitor (what a fleet job
pays per worker). When the results arrive separates that start-up from the steady cost per bag
b = (last - first arrival) / (bags - 1): the steady speed-up of N workers is b(1) / b(N) (what
thousands of bags see), and the per-bag overhead of distributing is N b(N) minus the
reference's b (worker-seconds a bag costs extra).
With 2 workers on 2 cores expect < 2x (each process also does bag I/O; the box is shared).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper modules
from bench_data import resolve_data  # noqa: E402
from hostinfo import cpu_model, load_avg, load_warning  # noqa: E402

CHUNK_EVERY = 4


def _f(x: float | None, nd: int = 2) -> str:
    return "nan" if x is None or not math.isfinite(float(x)) else f"{float(x):.{nd}f}"


def without_wall_clock(doc: Any) -> Any:
    """A summary minus what the wall clock measures (latencies) and the output path."""
    if isinstance(doc, dict):
        return {
            k: without_wall_clock(v) for k, v in doc.items() if "latency" not in k and k != "bag"
        }
    if isinstance(doc, list):
        return [without_wall_clock(v) for v in doc]
    return doc


def _export(data: Path, n: int, horizon: int, out: Path) -> list[Path]:
    from world_monitor.data import EpisodeDataset
    from world_monitor.data.bag import export_episode_bag

    ds = EpisodeDataset(data).select(split="test")
    ids = [r["id"] for r in ds.index][:n]
    if not ids:
        raise SystemExit(f"{data}: no test episodes")
    return [
        export_episode_bag(ds.load(i), out / i, horizon=horizon, chunk_every=CHUNK_EVERY)
        for i in ids
    ]


def _run(bags: list[Path], out: Path, **kw: Any) -> dict[str, Any]:
    """One replay_bags run; besides its wall time, the steady cost per bag from when results
    arrive: b = (last - first arrival) / (bags - 1), start-up a = first arrival - b."""
    from world_monitor.replay.many import replay_bags

    arrivals: list[float] = []
    t0 = time.perf_counter()
    results = replay_bags(
        bags, out, threads=1, on_result=lambda _: arrivals.append(time.perf_counter()), **kw
    )
    seconds = time.perf_counter() - t0
    bad = [r.error for r in results if r.summary is None]
    if bad:
        raise SystemExit(f"replay failed: {bad[0]}")
    per_bag = (arrivals[-1] - arrivals[0]) / max(len(arrivals) - 1, 1)
    return {
        "seconds": seconds,
        "per_bag": per_bag,
        "start": arrivals[0] - t0 - per_bag,
        "summaries": [without_wall_clock(r.summary) for r in results],
        "recorded_s": sum(float(r.summary["clock"]["duration"] or 0.0) for r in results),
        "decisions": sum(int(r.summary["session"]["counts"]["decisions"]) for r in results),
    }


def measure(
    bundle: Path, data: Path, episodes: int, workers: list[int], backend: str, engines: Path
) -> dict[str, Any]:
    import ray

    from world_monitor.runtime.monitor import load_monitor

    res: dict[str, Any] = {"load_start": load_avg(), "rows": []}
    tmp = Path(tempfile.mkdtemp(prefix="wm_fleet_bench_"))
    try:
        t0 = time.perf_counter()
        monitor = load_monitor(bundle, backend, engines_dir=engines)  # exports the engines once
        load_s = time.perf_counter() - t0
        bags = _export(data, episodes, monitor.horizon, tmp / "bags")
        res["bags"] = len(bags)
        ref = _run(bags, tmp / "ref", monitor=monitor)
        ref["load_s"] = load_s
        res["reference"] = ref
        common = {"bundle": bundle, "backend": backend, "engines_dir": engines}
        t0 = time.perf_counter()
        ray.init(
            num_cpus=max(workers),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )
        res["ray_start_s"] = time.perf_counter() - t0
        try:
            for how, extra in (
                ("process pool", {}),
                ("Ray (local cluster)", {"ray_address": "local"}),
            ):
                for w in workers:
                    key = f"{how.split()[0]}{w}"
                    run = _run(bags, tmp / key, workers=w, **common, **extra)
                    res["rows"].append({"how": how, "workers": w, **run})
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["load_end"] = load_avg()
    return res


def print_report(res: dict[str, Any], command: str) -> bool:
    """The table and the equality verdict (returned)."""
    import ray

    ref = res["reference"]
    print(f"# command: {command}")
    print(f"# host: {cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"# load average (1/5/15 min): start {res['load_start']} | end {res['load_end']}")
    if (warning := load_warning()) is not None:
        print(warning)
    print(f"# ray {ray.__version__}; bundle: {res['bundle']}; backend {res['backend']}")
    print(
        f"# {res['bags']} bags, a chunk every {CHUNK_EVERY} frames, {_f(ref['recorded_s'], 1)} s "
        f"recorded, {ref['decisions']} decisions; one model thread per worker"
    )
    print(f"# local Ray cluster start-up (once, not in the rows): {_f(res['ray_start_s'])} s")
    print(
        "# s per bag: (last - first result's arrival) / (bags - 1); start-up: first arrival - "
        "s per bag; "
        "steady speed-up = s per bag at 1 worker / at N (what thousands of bags see); overhead "
        "per bag = N x s per bag - the reference's s per bag (worker-seconds a bag costs extra)"
    )
    print(
        f"# reference: the monitor loaded once before its runs ({_f(ref['load_s'])} s, not in "
        "its wall time); workers=1 without Ray runs in this process too"
    )
    print(
        "\n| how | workers | wall s | x real time | start-up s | s per bag | steady speed-up vs "
        "1 worker | overhead per bag s | same summaries |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| in this process (reference) | 1 | {_f(ref['seconds'])} | "
        f"{_f(ref['recorded_s'] / ref['seconds'])} | {_f(ref['start'])} | "
        f"{_f(ref['per_bag'], 3)} | | | reference |"
    )
    same_all = True
    one: dict[str, float] = {}
    for row in res["rows"]:
        if row["workers"] == 1:
            one[row["how"]] = row["per_bag"]
        base = one.get(row["how"])
        same = row["summaries"] == ref["summaries"]
        same_all &= same
        print(
            f"| {row['how']} | {row['workers']} | {_f(row['seconds'])} | "
            f"{_f(row['recorded_s'] / row['seconds'])} | {_f(row['start'])} | "
            f"{_f(row['per_bag'], 3)} | {_f(base / row['per_bag']) if base else ''} | "
            f"{_f(row['per_bag'] * row['workers'] - ref['per_bag'], 3)} | "
            f"{'yes' if same else 'NO'} |"
        )
    print(f"\n# merged results equal the single-process run: {'yes' if same_all else 'NO'}")
    return same_all


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=default_bundle())
    parser.add_argument("--data", type=Path, default=Path("datasets/default"))
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--engines-dir", type=Path, default=Path("engines"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.bundle.is_dir():
        raise SystemExit(f"{args.bundle}: no bundle here (pass --bundle)")
    try:
        workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        raise SystemExit(f"--workers {args.workers!r}: expected e.g. 1,2") from None
    if not workers or workers[0] < 1:
        raise SystemExit("--workers: counts must be >= 1")
    argv_ = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/fleet.py " + " ".join(shlex.quote(a) for a in argv_)
    res = measure(
        args.bundle,
        resolve_data(args.data, bundle=args.bundle),
        args.episodes,
        workers,
        args.backend,
        args.engines_dir,
    )
    res["bundle"], res["backend"] = str(args.bundle), args.backend
    print_report(res, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
