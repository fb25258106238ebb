"""Soak: a long MonitorSession run on generated frames; is memory flat, are threads flat?

    python benchmarks/soak.py [--minutes 10] [--bundle BUNDLE (default: the shipped one)]
                              [--backend onnxruntime,torch] [--threads 1] [--engines-dir engines]
                              [--frames sim|synthetic] [--episodes 8]

Why this exists: the ROS node runs for days; a leak of a few kB per decision (a list that keeps
every assessment, a latency deque without a bound, an executor thread per call) is invisible in
any unit test and fatal on the robot. So the session runs exactly as the node runs it
(``keep_decisions=False``, wall-time latency, a decision per chunk) for ``--minutes`` of wall time
on a generated 10 Hz stream that also exercises the refusal paths the node meets: every 97th
chunk is absurd (``action_out_of_range``), every 500th frame comes after a 3 s gap
(``context_gap``, the context refills). ``--frames sim`` (default): ``--episodes``
in-distribution episodes of the built-in simulator, looped, each chunk the actions the scripted
policy executed next (so most decisions are confident and the gate opens: both the open and the
closed paths run); episode boundaries are 3 s gaps too. ``--frames synthetic``: a square drifting
over a noisy table with chunks drawn inside the bundle's action range (any image size; far from
the simulator's scenes, so the gate mostly stays closed). RSS is sampled every ``--sample-every`` decisions; the slope (least squares,
MB per 1000 decisions) is fitted after the warm-up (``--warmup-fraction`` of the decisions:
allocator and ONNX arenas grow at first, that is not a leak). Target (issue 14): <= 0.5 MB per
1000 decisions; threads (OS threads of the process) equal at start and end.

The clock is the stream's own (stamps advance 0.1 s per frame whatever inference takes), as in
replay, so the run is as many decisions as the CPU can make in the time.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper module
from hostinfo import cpu_model, load_avg  # noqa: E402

TARGET_MB_PER_1000 = 0.5
ABSURD_EVERY = 97
GAP_EVERY = 500
STRIDE = 4  # a chunk (and a decision) every 4 frames, as calibration decides


def _proc_status() -> tuple[float, int]:
    """(RSS in MB, OS threads) of this process from /proc/self/status."""
    rss_kb, threads = 0.0, 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = float(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss_kb / 1024.0, threads


def rss_slope(decisions: Sequence[int], rss_mb: Sequence[float]) -> float:
    """Least-squares slope of RSS over decisions, in MB per 1000 decisions (nan if < 2 points)."""
    x = np.asarray(decisions, dtype=np.float64)
    y = np.asarray(rss_mb, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0] * 1000.0)


class FrameStream:
    """Deterministic camera frames: a bright square drifting over a noisy dark table."""

    def __init__(self, hw: tuple[int, int], seed: int = 0, n: int = 64) -> None:
        rng = np.random.default_rng(seed)
        h, w = hw
        side = max(2, h // 8)
        self.frames = []
        for i in range(n):
            f = rng.integers(20, 45, (h, w, 3), dtype=np.uint8)
            y = int((h - side) * (0.5 + 0.4 * np.sin(i / n * 2 * np.pi)))
            x = int((w - side) * (0.5 + 0.4 * np.cos(i / n * 2 * np.pi)))
            f[y : y + side, x : x + side] = (220, 70, 40)
            self.frames.append(f)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames[i % len(self.frames)]


class SimStream:
    """Frames and executed actions of simulated in-distribution episodes, concatenated."""

    def __init__(self, hw: tuple[int, int], episodes: int, seed: int = 1000) -> None:
        from world_monitor.sim import SimConfig, simulate_episode

        if hw[0] != hw[1]:
            raise SystemExit(f"--frames sim needs a square bundle input, got {hw}")
        config = SimConfig(image_size=int(hw[0]))
        eps = [
            simulate_episode("in_distribution", seed + i, config=config) for i in range(episodes)
        ]
        self.frames = np.concatenate([e.frames for e in eps])
        self.actions = np.concatenate([e.actions for e in eps]).astype(np.float32)
        self.starts = set(np.cumsum([0] + [len(e.frames) for e in eps[:-1]]).tolist())

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames[i % len(self.frames)]

    def chunk(self, i: int, horizon: int) -> np.ndarray:
        idx = (np.arange(horizon) + i) % len(self.actions)
        return self.actions[idx].copy()

    def boundary(self, i: int) -> bool:
        return i % len(self.frames) in self.starts


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock duration (default 10)")
    ap.add_argument("--bundle", default=None, help="monitor bundle (default: the shipped one)")
    ap.add_argument("--backend", default="onnxruntime,torch", help="backend preference order")
    ap.add_argument("--engines-dir", default="engines")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--sample-every", type=int, default=20, help="RSS sample every N decisions")
    ap.add_argument("--warmup-fraction", type=float, default=0.2, help="excluded from the slope")
    ap.add_argument("--frames", choices=("sim", "synthetic"), default="sim", help="frame source")
    ap.add_argument("--episodes", type=int, default=8, help="simulated episodes (--frames sim)")
    args = ap.parse_args(argv)
    if not args.minutes > 0 or not 0 <= args.warmup_fraction < 1 or args.sample_every < 1:
        ap.error("need --minutes > 0, 0 <= --warmup-fraction < 1, --sample-every >= 1")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("world_monitor.runtime.gate").setLevel(logging.ERROR)  # refusals are wanted

    import torch

    from world_monitor.defaults import default_bundle
    from world_monitor.runtime.monitor import load_monitor
    from world_monitor.runtime.session import MonitorSession, SessionConfig

    torch.set_num_threads(args.threads)
    bundle = Path(args.bundle) if args.bundle else default_bundle()
    monitor = load_monitor(bundle, args.backend, engines_dir=args.engines_dir)
    session = MonitorSession(
        monitor, config=SessionConfig(keep_decisions=False, measure_wall_time=True)
    )
    sim = SimStream(monitor.image_size, args.episodes) if args.frames == "sim" else None
    frames = sim if sim is not None else FrameStream(monitor.image_size)
    rng = np.random.default_rng(1)
    lo, hi = monitor.action_range.low, monitor.action_range.high
    period = float(monitor.frame_period_s)
    shape = (monitor.horizon, monitor.action_dim)

    rss0, threads0 = _proc_status()
    samples: list[tuple[int, float]] = [(0, rss0)]
    t_wall0 = time.perf_counter()
    deadline = t_wall0 + args.minutes * 60.0
    stamp, frame_i, chunks, decisions = 0.0, 0, 0, 0
    closed = 0
    while time.perf_counter() < deadline:
        frame_i += 1
        gap = frame_i % GAP_EVERY == 0 or (sim is not None and sim.boundary(frame_i))
        stamp += 3.0 if gap else period
        session.tick(stamp)
        session.on_image(frames[frame_i], stamp)
        if frame_i % STRIDE:
            continue
        chunks += 1
        if sim is not None:
            chunk = sim.chunk(frame_i, shape[0])
        else:
            chunk = rng.uniform(lo, hi, size=shape).astype(np.float32)
        if chunks % ABSURD_EVERY == 0:
            chunk *= 10.0  # finite, absurd: refused
        session.on_actions(chunk, stamp)
        if session.decision_due(stamp):
            result = session.decide(stamp)
            decisions += 1
            closed += int(result.status.lock)
            if decisions % args.sample_every == 0:
                samples.append((decisions, _proc_status()[0]))
    wall = time.perf_counter() - t_wall0
    rss1, threads1 = _proc_status()
    samples.append((decisions, rss1))
    start = int(decisions * args.warmup_fraction)
    after = [(d, r) for d, r in samples if d >= start]
    slope = rss_slope([d for d, _ in after], [r for _, r in after])
    summary = session.summary()
    rejected = summary["accounting"]["actions"]["rejected"]
    counts = summary["counts"]
    verdict = "ok" if slope <= TARGET_MB_PER_1000 and threads1 == threads0 else "CHECK"

    cmd = shlex.join(argv if argv is not None else sys.argv[1:])
    print(f"# command: python benchmarks/soak.py {cmd}")
    print(f"# host: {platform.node()}, {cpu_model()}, torch threads {args.threads}")
    print(f"# load average (1/5/15 min): {load_avg()}")
    print(f"# bundle: {bundle}, backend {monitor.backend_name}, input {monitor.image_size}")
    print(
        f"# stream: {args.frames} frames every {period:g} s, a chunk every {STRIDE} frames, "
        f"every {ABSURD_EVERY}th "
        f"chunk absurd, a 3 s gap every {GAP_EVERY} frames; python threads "
        f"{threading.active_count()}"
    )
    print(f"# target: RSS slope <= {TARGET_MB_PER_1000} MB per 1000 decisions, threads flat")
    print(
        "\n| host | load average | backend | minutes | decisions | decisions/s | RSS start MB | "
        "RSS end MB | RSS slope MB/1000 decisions (after warm-up) | threads start | threads end "
        "| verdict |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {platform.node()} | {load_avg()} | {monitor.backend_name} | {wall / 60:.2f} | "
        f"{decisions} | {decisions / wall:.2f} | {rss0:.1f} | {rss1:.1f} | {slope:.3f} | "
        f"{threads0} | {threads1} | {verdict} |"
    )
    print("\n| refusal | count |")
    print("|---|---|")
    print(f"| action_out_of_range (rejected chunks) | {rejected.get('action_out_of_range', 0)} |")
    print(f"| context_gap (context restarts) | {counts.get('context_gaps', 0)} |")
    print(f"| decisions with the lock engaged | {closed} of {decisions} |")
    print(f"| accounting problems | {len(summary['accounting_problems'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
