"""Bring-your-own-robot, measured: the second robot of the test suite (a torque-driven 3-joint
arm, 48x40 camera, ``tests/second_robot.py``) through the whole path at a size that trains a
usable bundle, ending in ``evaluate``'s per-family table (ECE, per-signal AUROC, false stops).

Why a script and not a test: ``train=small`` takes minutes, not seconds; CI runs the same path at
``tiny`` size (``tests/test_second_robot.py``). The README quotes this script's output.

    .venv/bin/python scripts/second_robot_eval.py --out runs/second_robot            # train=small
    .venv/bin/python scripts/second_robot_eval.py --out /tmp/arm --train tiny --in-distribution 120

Every step is the CLI a team would type; the script prints each command and its wall time.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from second_robot import ACTION_TOPIC, IMAGE_TOPIC, SHIFTS, record  # noqa: E402

from world_monitor import cli  # noqa: E402


def _run(argv: list[str]) -> None:
    bags = [a for a in argv if "/bags/" in a]
    shown = shlex.join(a for a in argv if "/bags/" not in a)
    if bags:  # the bag list as the glob a reader would type
        head, _, tail = shown.partition(" ")
        shown = f"{head} {shlex.quote(str(Path(bags[0]).parent))}/* {tail}"
    print(f"\n$ world-monitor {shown}", flush=True)
    start = time.perf_counter()
    rc = cli.main(argv)
    print(f"[{argv[0]}: exit {rc}, {time.perf_counter() - start:.0f} s]", flush=True)
    if rc != 0:
        raise SystemExit(rc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="work directory (created)")
    ap.add_argument("--in-distribution", type=int, default=300, help="normal recordings")
    ap.add_argument("--shifted", type=int, default=20, help="recordings per shift family")
    ap.add_argument("--length", type=int, default=30, help="frames per recording (10 Hz)")
    ap.add_argument("--image-size", default="32x32", help="the bundle's input (import-bag)")
    ap.add_argument("--train", default="small", help="size: tiny | small | default | gpu")
    ap.add_argument("--model", default="deterministic")
    ap.add_argument("--seed", type=int, default=0, help="the run seed (hydra seed=)")
    ap.add_argument("overrides", nargs="*", help="extra hydra overrides for train")
    args = ap.parse_args()

    root = args.out
    start = time.perf_counter()
    bags, labels = record(
        root,
        in_distribution=args.in_distribution,
        shifted=args.shifted,
        onset=(10, 16),
        length=args.length,
        shifts=SHIFTS,
        horizon=8,
    )
    print(f"recorded {len(bags)} bags in {time.perf_counter() - start:.0f} s; labels {labels}")
    data, run = root / "dataset", root / "run"
    _run(
        [
            "import-bag",
            *map(str, bags),
            "--out",
            str(data),
            "--split",
            "auto",
            "--labels",
            str(labels),
            "--image-size",
            args.image_size,
            "--image-resize",
            "center_crop",
            "--action-field",
            "effort",
            "--image-topic",
            IMAGE_TOPIC,
            "--action-topic",
            ACTION_TOPIC,
            "--no-progress",
        ]
    )
    _run(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            f"model={args.model}",
            f"train={args.train}",
            f"seed={args.seed}",
            *args.overrides,
            "--no-progress",
        ]
    )
    bundle = str(run / "bundle")
    _run(["evaluate-model", bundle, "--data", str(data), "--no-progress"])
    _run(["calibrate", bundle, "--data", str(data), "--no-progress"])
    _run(["evaluate", bundle, "--data", str(data), "--no-progress"])
    print(f"\nall steps in {time.perf_counter() - start:.0f} s; table: {run / 'eval_monitor'}")


if __name__ == "__main__":
    main()
