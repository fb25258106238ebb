"""How the ``colour`` signal was chosen: three palette-novelty scores on the same episodes.

    python benchmarks/colour_palette.py [--data datasets/default] [--train-episodes 400]
                                        [--every 5] [--limit 30]

Why this exists: the ``colour`` signal (:mod:`world_monitor.runtime.colour`) was picked by
measurement, and this script is that measurement, so it can be repeated on any dataset. It
measures separation quality, not speed. Every variant is fitted on the same frames (the first
``--train-episodes`` in-distribution training episodes, every ``--every``-th frame: what
``calibrate`` fits the shipped palette on) and scored on each episode's decision frames (every
4th frame from frame 4) as the episode's maximum:

* ``unseen pixels``: how many pixels fall in a 32-level RGB bin no fitted pixel fell in;
* ``unseen pixels, palette dilated 1 bin``: the same with every fitted bin's neighbours counted
  as seen (tolerates per-episode colour jitter);
* ``smoothed density (shipped)``: :class:`ColourModel` as ``calibrate`` builds it.

Columns: the in-distribution **calibration** episodes' maxima (the reference a threshold would
be set on: q95 / q99 / max, and how many distinct values — a mass of ties cannot be ranked),
then per shift family of the **test** split (``--limit`` episodes, as ``world-monitor
evaluate``'s selection) the episode AUROC against as many in-distribution test episodes and the
share of shifted episodes above the calibration q99.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper module
from hostinfo import cpu_model, load_avg  # noqa: E402

STEPS = slice(4, None, 4)


def _variants(counts: np.ndarray, bins: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """name -> per-frame score of a uint8 ``[T, H, W, 3]`` stack."""
    from scipy.ndimage import maximum_filter

    from world_monitor.runtime.colour import ColourModel, bin_index

    seen = counts > 0
    dilated = maximum_filter(seen.reshape(bins, bins, bins), size=3).ravel()
    model = ColourModel(counts, bins=bins)

    def unseen(mask: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda f: (~mask[bin_index(f, bins)]).reshape(len(f), -1).sum(axis=1)

    return {
        "unseen pixels": unseen(seen),
        "unseen pixels, palette dilated 1 bin": unseen(dilated),
        "smoothed density (shipped)": lambda f: np.array([model.score(x) for x in f]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    from world_monitor.data import EpisodeDataset
    from world_monitor.runtime.colour import ColourModel
    from world_monitor.runtime.evaluate import ID_FAMILY, select_test_records

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="datasets/default")
    ap.add_argument("--train-episodes", type=int, default=400)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--limit", type=int, default=30, help="test episodes per family")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    ds = EpisodeDataset(args.data)
    train = ds.select(split="train", shift=None).index[: args.train_episodes]
    fitted = ColourModel.fit(ds.load(r["id"]).frames[:: args.every] for r in train)
    variants = _variants(fitted.counts, fitted.bins)

    def episode_max(rec_id: str) -> dict[str, float]:
        frames = ds.load(rec_id).frames[STEPS]
        return {name: float(score(frames).max()) for name, score in variants.items()}

    calib = [episode_max(r["id"]) for r in ds.select(split="calib", shift=None).index]
    tests: dict[str, list[dict[str, float]]] = {}
    for fam, rec in select_test_records(ds, args.limit):
        tests.setdefault(fam, []).append(episode_max(rec["id"]))
    families = [f for f in tests if f != ID_FAMILY]

    print(f"# command: python benchmarks/colour_palette.py {shlex.join(argv or sys.argv[1:])}")
    print(f"# host: {cpu_model()}; load average (1/5/15 min): {load_avg()}")
    print(
        f"# palette: {len(train)} training episodes, every {args.every}th frame, "
        f"{int(np.count_nonzero(fitted.counts))} of {fitted.bins**3} RGB bins non-empty; "
        f"reference: {len(calib)} in-distribution calibration episodes; "
        f"{len(tests[ID_FAMILY])} in-distribution test episodes"
    )
    head = "| score | cal q95 / q99 / max | distinct | " + " | ".join(families) + " |"
    print("\n(per family: episode AUROC / share above the calibration q99)\n")
    print(head)
    print("|" + "---|" * (3 + len(families)))
    for name in variants:
        ref = np.array([c[name] for c in calib])
        q95, q99 = np.quantile(ref, [0.95, 0.99])
        ids = [e[name] for e in tests[ID_FAMILY]]
        cells = []
        for fam in families:
            sh = [e[name] for e in tests[fam]]
            auroc = roc_auc_score([0] * len(ids) + [1] * len(sh), ids + sh)
            cells.append(f"{auroc:.2f} / {np.mean(np.array(sh) > q99):.2f}")
        print(
            f"| {name} | {q95:.3g} / {q99:.3g} / {ref.max():.3g} | {len(np.unique(ref))} | "
            + " | ".join(cells)
            + " |"
        )
    print(f"\n# {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
