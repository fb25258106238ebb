"""Which post-hoc map recalibrates the C³ probe best: raw vs isotonic vs Platt vs beta.

    python benchmarks/recalibration.py [--bundle runs/default/bundle] [--data datasets/default]
                                       [--calib-windows 128] [--test-windows 64]

Why this exists: ``world-monitor calibrate`` fits a post-hoc map of the probe's confidence
(:mod:`world_monitor.uq.recalibration`) and the choice of map family was made by measurement;
this script is that measurement, so it can be repeated on any bundle. Every map is fitted on
rollouts of in-distribution **calibration** windows (the scale half the bundle's calibration
used, when it records one) and scored on in-distribution **test** windows, with the label of
method.md §1 (``|x̂ − x*| <= ε``), ECE/MCE with 20 equal-width bins per ε (every latent element
one sample), averaged over the grid — the numbers ``evaluate-model`` reports. The baseline in
the same run is the raw probe. It measures quality, not speed (the fits take seconds).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper module
from hostinfo import cpu_model, load_avg  # noqa: E402


def _samples(
    model, episodes, windows: int, seed: int
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """The samples ``calibrate`` fits on (``collect_correctness_samples``), q̂ as float64."""
    from world_monitor.training.evaluate import (
        EvalOptions,
        collect_correctness_samples,
        select_windows,
    )

    length = model.config.context_length + model.config.horizon
    wins = select_windows(episodes, length, 2, windows, seed, after_onset=False)
    samples = collect_correctness_samples(model, episodes, wins, EvalOptions(progress=False), "x")
    return {e: (q.astype(np.float64), acc) for e, (q, acc) in samples.items()}


def _maps(
    q: np.ndarray, acc: np.ndarray, seed: int
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each candidate map fitted on (q, acc)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    from world_monitor.uq.recalibration import MAX_FIT_SAMPLES, ConfidenceRecalibration

    rng = np.random.default_rng(seed)
    if q.size > MAX_FIT_SAMPLES:
        idx = rng.choice(q.size, MAX_FIT_SAMPLES, replace=False)
        q, acc = q[idx], acc[idx]

    def logit(x: np.ndarray) -> np.ndarray:
        c = np.clip(x, 1e-6, 1 - 1e-6)
        return np.log(c / (1 - c))[:, None]

    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(q, acc)
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(logit(q), acc)
    beta = ConfidenceRecalibration.fit({0.5: (q, acc)}, seed=seed)
    return {
        "raw probe (baseline)": lambda x: x,
        "isotonic regression": iso.predict,
        "Platt scaling": lambda x: platt.predict_proba(logit(x))[:, 1],
        "beta calibration (shipped)": lambda x: beta.apply(x, 0.5),
    }


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from world_monitor.data import EpisodeDataset
    from world_monitor.defaults import default_bundle
    from world_monitor.models.bundle import load_bundle
    from world_monitor.models.world_model import WorldModel
    from world_monitor.uq.calibration import CalibrationAccumulator

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=None, help="bundle (default: the shipped one)")
    ap.add_argument("--data", default="datasets/default", help="dataset with calib + test splits")
    ap.add_argument("--calib-windows", type=int, default=128)
    ap.add_argument("--test-windows", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle_path = Path(args.bundle) if args.bundle else default_bundle()
    bundle = load_bundle(bundle_path)
    model = WorldModel.from_bundle(bundle)
    ds = EpisodeDataset(args.data)
    calib = ds.select(split="calib", shift=None)
    scale = (bundle.calibration or {}).get("data", {}).get("scale_episodes")
    if scale:
        calib = calib.select(ids=scale)

    print(f"# command: python benchmarks/recalibration.py {shlex.join(argv or sys.argv[1:])}")
    print(f"# host: {cpu_model()}, torch threads {args.threads}")
    print(f"# load average (1/5/15 min): {load_avg()}")
    print(
        f"# bundle: {bundle_path}; fit on {args.calib_windows} calibration windows "
        f"({len(calib)} episodes{', the scale half' if scale else ''}), scored on "
        f"{args.test_windows} in-distribution test windows"
    )
    fit_data = _samples(model, calib, args.calib_windows, args.seed)
    test_data = _samples(model, ds.select(split="test", shift=None), args.test_windows, args.seed)
    scores: dict[str, list[tuple[float, float]]] = {}
    for eps in sorted(fit_data):
        maps = _maps(*fit_data[eps], seed=args.seed)
        q, acc = test_data[eps]
        for name, f in maps.items():
            a = CalibrationAccumulator([eps])
            a.update(eps, f(q), acc)
            s = a.stats(eps)
            scores.setdefault(name, []).append((s.ece, s.mce))
    print("\n| map | ECE (mean over eps) | MCE (mean over eps) | worst-eps MCE | ECE / raw |")
    print("|---|---|---|---|---|")
    raw_ece = float(np.mean([e for e, _ in scores["raw probe (baseline)"]]))
    for name, rows in scores.items():
        arr = np.asarray(rows)
        ece, mce = arr.mean(axis=0)
        print(f"| {name} | {ece:.4f} | {mce:.4f} | {arr[:, 1].max():.3f} | {ece / raw_ece:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
