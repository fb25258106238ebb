"""Simulator and dataset-loading throughput, printed as a table.

    python benchmarks/sim_and_data.py [--episodes 40] [--image-size 64] [--workers 2]

Measures, in one run:
* simulator frames/s in one process and across `--workers` processes (the `simulate` command's
  pool), with the scaling ratio against the single-process baseline;
* loading throughput of the dataset just written: random training windows (k+H = 12 frames) via
  memory-mapped `.npy` (`EpisodeDataset.windows`), whole episodes, and a torch DataLoader over
  `WindowDataset`, with the ratio against a baseline that reads each whole episode eagerly with
  `np.load` (no mmap) and slices one window out of it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _sim_run(root: Path, episodes: int, image_size: int, workers: int) -> tuple[float, int]:
    from world_monitor.config import load_config
    from world_monitor.data.generate import generate_dataset

    cfg = load_config(
        [
            f"sim.image_size={image_size}",
            f"data.splits.train={episodes}",
            "data.splits.val=0",
            "data.splits.calib=0",
            "data.splits.test=0",
            "data.shift_test_per_family=0",
        ]
    )
    result = generate_dataset(cfg, root, workers=workers, progress=False)
    return result.frames_per_second, result.frames_generated


def _load_bench(root: Path, length: int) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    from world_monitor.data import EpisodeDataset, WindowDataset

    ds = EpisodeDataset(root)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    n = sum(1 for _ in ds.windows("train", length=length, stride=1, shuffle=True, seed=0))
    out["windows (mmap, shuffled)"] = n / (time.perf_counter() - t0)

    rng = np.random.default_rng(0)
    recs = ds.select(split="train").index
    t0 = time.perf_counter()
    for _ in range(n if n < 2000 else 2000):
        rec = recs[int(rng.integers(len(recs)))]
        ep_dir = root / rec["path"]
        frames = np.load(ep_dir / "frames.npy")  # eager read of the whole episode
        actions = np.load(ep_dir / "actions.npy")
        s = int(rng.integers(0, frames.shape[0] - length + 1))
        _ = frames[s : s + length].copy(), actions[s : s + length].copy()
    out["baseline: eager np.load + slice"] = min(n, 2000) / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    frames = sum(ds[i].length for i in range(len(ds)))
    out["whole episodes (frames/s)"] = frames / (time.perf_counter() - t0)

    torch.set_num_threads(1)
    loader = DataLoader(
        WindowDataset(ds, length=length, split="train"), batch_size=32, shuffle=True
    )
    t0 = time.perf_counter()
    n = sum(batch[0].shape[0] for batch in loader)
    out["DataLoader(batch 32) windows"] = n / (time.perf_counter() - t0)
    return out


def _bag_bench(root: Path, out: Path, repeats: int = 5) -> dict[str, float]:
    """Milliseconds to export / import one episode per storage (median of `repeats`)."""
    from world_monitor.data import EpisodeDataset
    from world_monitor.data.bag import export_episode_bag, import_episode_bag

    episode = EpisodeDataset(root)[0]
    times: dict[str, float] = {}
    for storage in ("mcap", "sqlite3"):
        exp, imp = [], []
        for i in range(repeats):
            path = out / f"{storage}-{i}"
            t0 = time.perf_counter()
            export_episode_bag(episode, path, storage=storage)
            exp.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            back = import_episode_bag(path)
            imp.append(time.perf_counter() - t0)
            assert back.equals(episode), "bag round trip changed the episode"
        times[f"export {storage}"] = 1e3 * float(np.median(exp))
        times[f"import {storage}"] = 1e3 * float(np.median(imp))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--window", type=int, default=12, help="window length k+H")
    args = parser.parse_args()

    print(f"# command: python {' '.join(sys.argv)}")
    print(
        f"# host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, MUJOCO_GL={os.environ.get('MUJOCO_GL', 'egl')}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="wm_bench_"))
    try:
        fps1, frames = _sim_run(tmp / "one", args.episodes, args.image_size, 1)
        fpsn, _ = _sim_run(tmp / "many", args.episodes, args.image_size, args.workers)
        print(
            f"\n## simulator ({args.episodes} episodes, {frames} frames, "
            f"{args.image_size}x{args.image_size})"
        )
        print("| processes | frames/s | ratio vs 1 process |")
        print("|---|---|---|")
        print(f"| 1 | {fps1:.0f} | 1.00 |")
        print(f"| {args.workers} | {fpsn:.0f} | {fpsn / fps1:.2f} |")

        loads = _load_bench(tmp / "many", args.window)
        base = loads["baseline: eager np.load + slice"]
        print(f"\n## dataset loading (window = {args.window} frames)")
        print("| reader | items/s | ratio vs eager baseline |")
        print("|---|---|---|")
        for name, value in loads.items():
            ratio = f"{value / base:.1f}" if "frames/s" not in name else "-"
            print(f"| {name} | {value:,.0f} | {ratio} |")

        bags = _bag_bench(tmp / "many", tmp / "bags")
        print(
            f"\n## rosbag2 round trip of one {frames // args.episodes}-frame episode (median of 5)"
        )
        print("| step | ms |")
        print("|---|---|")
        for name, ms in bags.items():
            print(f"| {name} | {ms:.1f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
