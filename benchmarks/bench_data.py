"""The dataset a benchmark reads: the user's, or a small seeded one made on the spot.

Why: the benchmarks used to read ``datasets/default`` (1.2 GB, ~3 min of ``simulate``) and
crashed with a traceback on a fresh clone where it does not exist. Timing a decision or a replay
needs a handful of test episodes, not the training set, so when the default dataset is missing
the benchmark generates the built-in simulator's test episodes it needs (seeded: the same
episodes every time, ~seconds) under ``runs/bench_data`` and says so in one line. A ``--data``
the user named that does not exist is an error (exit 2), never silently replaced.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["DEFAULT_DATA", "resolve_data"]

DEFAULT_DATA = Path("datasets/default")
GENERATED = Path("runs/bench_data")


def resolve_data(
    data: Path, *, bundle: Path | None = None, test: int = 6, per_family: int = 1, seed: int = 0
) -> Path:
    """``data`` if it is a dataset; for the missing default, a generated one (``test``
    in-distribution and ``per_family`` shifted test episodes per family, ``seed``) at the
    ``bundle``'s image size (the simulator renders square frames)."""
    data = Path(data)
    if (data / "index.json").is_file():
        return data
    if data != DEFAULT_DATA:
        print(f"error: {data}: not a dataset (no index.json)", file=sys.stderr)
        raise SystemExit(2)
    size = 64
    if bundle is not None:
        from world_monitor.models.bundle import load_bundle

        size = int(load_bundle(bundle).image_size[0])
    out = GENERATED / f"test{test}_shift{per_family}_seed{seed}_{size}px"
    if (out / "index.json").is_file():
        print(f"# data: {DEFAULT_DATA} missing; using the generated {out}")
        return out
    from world_monitor.config import load_config
    from world_monitor.data.generate import generate_dataset

    cfg = load_config(
        [
            f"seed={seed}",
            f"sim.image_size={size}",
            "data.splits.train=0",
            "data.splits.val=0",
            "data.splits.calib=0",
            f"data.splits.test={test}",
            f"data.shift_test_per_family={per_family}",
        ]
    )
    start = time.perf_counter()
    generate_dataset(cfg, out, workers=1, progress=False)
    print(
        f"# data: {DEFAULT_DATA} missing; generated {test} in-distribution + {per_family} per "
        f"shift family test episodes (seed {seed}) at {out} in {time.perf_counter() - start:.0f} s "
        "(`world-monitor simulate` makes the full dataset)"
    )
    return out
