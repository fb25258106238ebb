"""Held-out camera faults through the monitor: does a lens smudge or a frozen camera reach STOP?

    python benchmarks/camera_faults.py [--bundle BUNDLE] [--data datasets/default] [--episodes 30]
                                       [--areas 0.01,0.03,0.06] [--onset 20] [--no-peers]
                                       [--out runs/camera_faults]

Why this exists (issue 16): the simulator's shift families change the world; a camera that goes
bad while the world is fine is a different failure, and the monitor must stop for it too. The
faults (:mod:`world_monitor.data.camera_faults`) are applied to the first ``--episodes``
in-distribution test episodes — half from the first frame, half from frame ``--onset`` on,
alternating — and each faulted episode is scored exactly as ``world-monitor evaluate`` scores a
shift family (same decision points, same thresholds, the same episodes unfaulted as the
negatives). Nothing in training or calibration has seen these faults. Each smudge is placed by
a seed derived from the episode's position, so a run is deterministic.

Printed per fault: episode AUROC of the monitor's risk, of the world model's own signals fused
(``world_model``) and of the best single signal; episodes reaching STOP and SLOW after the onset;
the median delay from onset to the first STOP; the box IoU of the first alert against the smudge
mask; and, when the dataset has train/calib splits, FIPER and FAIL-Detect on the same episodes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import DEFAULT_DATA, resolve_data  # noqa: E402
from hostinfo import cpu_model, load_avg, load_warning  # noqa: E402


class FaultedDataset:
    """A dataset view whose ``load`` returns an episode with a camera fault from its onset on.

    Only what :func:`world_monitor.runtime.evaluate._score_episode` reads is provided: the
    faulted frames and their ground-truth mask; the actions, stamps and outcome are the
    recording's (the fault is in the camera, the robot did what it did).
    """

    def __init__(
        self, ds: Any, fault: str, area: float, onsets: dict[str, int], seeds: dict[str, int]
    ) -> None:
        self.ds, self.fault, self.area, self.onsets, self.seeds = ds, fault, area, onsets, seeds

    def load(self, episode_id: str) -> Any:
        from world_monitor.data.camera_faults import frozen_camera, lens_smudge

        ep = self.ds.load(episode_id)
        onset = self.onsets[episode_id]
        if self.fault == "frozen":
            faulted = frozen_camera(ep.frames, onset)
        else:
            faulted = lens_smudge(ep.frames, onset, area=self.area, seed=self.seeds[episode_id])
        meta = replace(ep.meta, shift=self.fault, shift_onset=onset)
        return replace(ep, frames=faulted.frames, shift_mask=faulted.mask, meta=meta)


def _fault_names(areas: Sequence[float]) -> list[tuple[str, float]]:
    return [(f"smudge_{100 * a:g}pct", a) for a in areas] + [("frozen", 0.0)]


def _stop_delays(episodes: Sequence[Any], stop: float) -> list[float]:
    """Seconds from onset to the first post-onset STOP, per episode that reached one."""
    out = []
    for ep in episodes:
        first = next((d.t for d in ep.labelled() if d.scores["monitor"] > stop), None)
        if first is not None:
            out.append((first - (ep.onset or 0)) / ep.fps)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None, help="calibrated bundle (default: the shipped one)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--episodes", type=int, default=30, help="faulted copies per fault")
    p.add_argument("--areas", default="0.01,0.03,0.06", help="smudge areas (fractions)")
    p.add_argument("--onset", type=int, default=20, help="onset frame of the mid-episode half")
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--backend", default="onnxruntime,torch")
    p.add_argument("--engines-dir", default="engines")
    p.add_argument("--no-peers", action="store_true", help="skip FIPER / FAIL-Detect")
    p.add_argument("--out", default="runs/camera_faults")
    args = p.parse_args(argv)

    import torch

    from world_monitor.data import EpisodeDataset
    from world_monitor.data.dataset import json_default
    from world_monitor.defaults import default_bundle
    from world_monitor.runtime.evaluate import (
        ID_FAMILY,
        PEER_DETECTORS,
        EvaluateOptions,
        _f,
        _fit_peers,
        _score_episode,
        _signal_detectors,
        compute_metrics,
    )
    from world_monitor.runtime.monitor import Monitor

    torch.set_num_threads(1)
    bundle = Path(args.bundle) if args.bundle else default_bundle()
    data = resolve_data(Path(args.data), bundle=bundle, test=max(args.episodes, 6))
    areas = [float(a) for a in args.areas.split(",") if a]
    command = shlex.join(
        ["python", "benchmarks/camera_faults.py", *(sys.argv[1:] if argv is None else argv)]
    )
    print(f"# command: {command}")
    print(f"# host: {cpu_model()}; load average at start {load_avg()}")
    if warning := load_warning():
        print(warning)
    t0 = time.perf_counter()
    monitor = Monitor.from_bundle(bundle, args.backend, engines_dir=args.engines_dir)
    ds = EpisodeDataset(data)
    ind_recs = ds.select(split="test", shift=None).index[: args.episodes]
    if len(ind_recs) < 2:
        print(f"error: {data}: fewer than 2 in-distribution test episodes", file=sys.stderr)
        return 2
    # the peers exactly as `evaluate` fits them (same splits, same alpha), or why not
    peer_opts = EvaluateOptions(
        stride=args.stride,
        baselines=() if args.no_peers else ("fiper", "fail_detect"),
        progress=False,
    )
    peers, why = _fit_peers(monitor, ds, peer_opts)
    if peers is None:
        print(f"# peers: not run ({'--no-peers' if args.no_peers else why})")
    detectors = _signal_detectors(monitor) + (list(PEER_DETECTORS) if peers else [])

    def score(dataset: Any, family: str, rec: Any) -> Any:
        return _score_episode(
            monitor,
            dataset,
            family,
            rec,
            stride=args.stride,
            spread_seeds=[],
            ensemble=None,
            oracle=False,
            peers=peers,
        )

    negatives = [score(ds, ID_FAMILY, r) for r in ind_recs]
    onsets = {r["id"]: (0 if i % 2 == 0 else args.onset) for i, r in enumerate(ind_recs)}
    seeds = {r["id"]: 1000 + i for i, r in enumerate(ind_recs)}
    slow, stop = monitor.slow_threshold, monitor.stop_threshold
    alarms = {"monitor": stop, **(peers.alarms() if peers else {})}
    rows, results = [], {}
    for name, area in _fault_names(areas):
        view = FaultedDataset(ds, name if area == 0 else "smudge", area, onsets, seeds)
        recs = [{**r, "onset": onsets[r["id"]]} for r in ind_recs]
        positives = [score(view, name, r) for r in recs]
        m = compute_metrics(
            [*negatives, *positives], slow=slow, stop=stop, detectors=detectors, alarms=alarms
        )
        fam = m["families"][name]
        det = {k: v["episode"]["auroc"] for k, v in fam["detectors"].items()}
        singles = {
            k: v for k, v in det.items() if k not in ("monitor", "world_model", *PEER_DETECTORS)
        }
        best = max((k for k in singles if singles[k] is not None), key=lambda k: singles[k])
        delays = _stop_delays(positives, stop)
        results[name] = {
            "area": area or None,
            "metrics": fam,
            "stop_delay_s": delays,
            "side_by_side": {
                k: v["calibrated"]["families"][name] for k, v in m["side_by_side"].items()
            },
        }
        rows.append(
            [
                name,
                str(len(positives)),
                _f(det["monitor"]),
                _f(det.get("world_model")),
                f"{best} {_f(det[best])}",
                f"{fam['tpr_at_stop']['k']}/{fam['tpr_at_stop']['n']}",
                f"{fam['tpr_at_slow']['k']}/{fam['tpr_at_slow']['n']}",
                _f(float(np.median(delays)) if delays else None, 1),
                _f(fam["localisation"].get("box_iou")) if area else "whole frame",
                *([f"{_f(det['fiper'])} / {_f(det['fail_detect'])}"] if peers else []),
            ]
        )
    header = [
        "fault",
        "episodes",
        "monitor AUROC",
        "world_model AUROC",
        "best single signal",
        "STOP",
        "SLOW",
        "delay to STOP s (median)",
        "box IoU",
        *(["FIPER / FAIL-Detect AUROC"] if peers else []),
    ]
    print(
        f"camera faults on {len(ind_recs)} in-distribution test episodes of {data} (half from frame 0, "
        f"half from frame {args.onset}), bundle {bundle}, STOP > {stop:.10g}"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    id_fs = sum(e.max_score("monitor") > stop for e in negatives)
    print(f"in-distribution (unfaulted) episodes stopped: {id_fs}/{len(negatives)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": command,
        "bundle": str(bundle),
        "data": str(data),
        "episodes": len(ind_recs),
        "onset": args.onset,
        "thresholds": {"slow": slow, "stop": stop},
        "in_distribution_stopped": int(id_fs),
        "peers": peers.info if peers else None,
        "faults": results,
        "seconds": time.perf_counter() - t0,
        "load_average_end": load_avg(),
    }
    (out / "camera_faults.json").write_text(json.dumps(doc, indent=1, default=json_default))
    print(
        f"# {time.perf_counter() - t0:.0f} s; load average at end {load_avg()}; wrote {out / 'camera_faults.json'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
