"""`world-monitor calibrate`: fit the risk scale and the SLOW/STOP thresholds of a bundle.

The guarantee we want is per **episode**: "at most ``stop_alpha`` (default 2%) of in-distribution
episodes ever reach STOP". A decision-level threshold would need α divided by the number of
decisions per episode, which is conservative when decisions are correlated (they are: frames a
few steps apart look alike). So we calibrate on each episode's **maximum** risk, which is exactly
the event "this episode would have been stopped", and the split-conformal quantile of those
maxima gives a finite-sample bound that holds for any correlation inside an episode:
``P(max risk of a new in-distribution episode > τ) ≤ 1 − k/(n+1) ≤ α``, with
``k = ⌈(n+1)(1−α)⌉`` (the k-th smallest calibration maximum is τ).

The calibration split is divided in two (alternating episodes): half **A** fits the risk scale
(each signal's in-distribution CDF, and the reference confidence maps used for localisation),
half **B** fits the thresholds on the resulting risk. Keeping them apart keeps the conformal
bound honest. The episodes, their decisions, the bound and, optionally, the rate achieved on the
in-distribution test split are written into ``calibration.json`` with everything else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.chunks import decision_points
from world_monitor.runtime.risk import RiskCalibration, RiskConfig, confidence_summaries

__all__ = ["CalibrationResult", "calibrate_bundle", "episode_max_risks", "retarget", "run_raw"]

LOG = logging.getLogger(__name__)


@dataclass
class EpisodeScores:
    """Raw signals of every decision of one episode, plus the confidence summaries."""

    episode_id: str
    steps: list[int]
    scores: list[dict[str, float]]
    cell_conf: np.ndarray  # [D, h, w] per decision: channel mean, worst step
    step_conf: np.ndarray  # [D, H]


@dataclass
class CalibrationResult:
    calibration: RiskCalibration
    seconds: float
    decisions: int
    verify: dict[str, Any] | None


def run_raw(
    monitor: Any,
    dataset: Any,
    records: Sequence[Any],
    *,
    stride: int,
    progress: bool = True,
    desc: str = "rollouts",
) -> list[EpisodeScores]:
    """Roll the monitor out at every ``stride``-th frame of each episode; raw signals only."""
    from tqdm import tqdm

    from world_monitor.runtime.monitor import runtime_inputs

    out = []
    for rec in tqdm(records, desc=desc, unit="ep", disable=not progress):
        ep = dataset.load(rec["id"])
        steps, scores, cells, stepc = [], [], [], []
        for point in decision_points(ep, monitor.context_length, monitor.horizon, stride):
            raw = monitor.raw(*runtime_inputs(point))
            cell, step = confidence_summaries(raw.confidence)
            steps.append(point.t)
            scores.append(raw.scores)
            cells.append(cell)
            stepc.append(step)
        out.append(EpisodeScores(rec["id"], steps, scores, np.asarray(cells), np.asarray(stepc)))
    return out


def episode_max_risks(
    calibration: RiskCalibration, episodes: Sequence[EpisodeScores]
) -> np.ndarray:
    return np.asarray([max(calibration.risk(s) for s in ep.scores) for ep in episodes])


def retarget(
    calibration: RiskCalibration,
    *,
    stop_alpha: float | None = None,
    slow_alpha: float | None = None,
) -> RiskCalibration:
    """(Re-)derive thresholds for false-alarm targets from the stored episode maxima.

    Used by ``calibrate`` itself and by the node's ``target_false_alarm_rate``, so both clip and
    order the thresholds (slow <= stop <= 1) and record their conformal bounds the same way.
    """
    from world_monitor.uq.detection import episode_conformal_threshold

    maxima = np.asarray(calibration.info.get("threshold_episode_max_risk", []), dtype=np.float64)
    if maxima.size == 0:
        raise ValueError(
            "calibration has no stored episode maxima; re-run `world-monitor calibrate`"
        )
    for level, alpha in (("stop", stop_alpha), ("slow", slow_alpha)):
        if alpha is None:
            continue
        ct = episode_conformal_threshold(maxima, alpha)
        setattr(calibration, f"{level}_threshold", float(min(1.0, ct.threshold)))
        calibration.info[f"{level}_alpha"] = alpha
        calibration.info[f"{level}_bound"] = float(ct.bound)
    calibration.slow_threshold = min(calibration.slow_threshold, calibration.stop_threshold)
    return calibration


def calibrate_bundle(
    bundle: str | Path,
    data: str | Path,
    *,
    risk: RiskConfig | None = None,
    stop_alpha: float = 0.02,
    slow_alpha: float = 0.10,
    stride: int = 4,
    split: str = "calib",
    verify_split: str | None = "test",
    limit: int | None = None,
    backend: str | Sequence[str] | None = ("onnxruntime", "torch"),
    engines_dir: str | Path = "engines",
    progress: bool = True,
    write: bool = True,
) -> CalibrationResult:
    """Fit and (by default) write the bundle's calibration.json; see the module docstring."""
    from world_monitor.data import EpisodeDataset
    from world_monitor.models.bundle import update_calibration
    from world_monitor.runtime.monitor import Monitor

    if not 0 < stop_alpha <= slow_alpha < 1:
        raise ValueError(f"need 0 < stop_alpha ({stop_alpha}) <= slow_alpha ({slow_alpha}) < 1")
    t0 = time.perf_counter()
    risk = risk or RiskConfig()
    monitor = Monitor.from_bundle(
        bundle, backend, engines_dir=engines_dir, epsilon=risk.epsilon, allow_uncalibrated=True
    )
    monitor.risk_config = risk
    monitor.rollout.epsilon = risk.epsilon
    ds = EpisodeDataset(data)
    records = ds.select(split=split, shift=None).index[: limit or None]
    if len(records) < 20:
        raise ValueError(
            f"{data}: split {split!r} has {len(records)} in-distribution episodes; need >= 20"
        )
    half_a, half_b = records[0::2], records[1::2]
    scored_a = run_raw(
        monitor, ds, half_a, stride=stride, progress=progress, desc="calib A (scale)"
    )
    scored_b = run_raw(
        monitor, ds, half_b, stride=stride, progress=progress, desc="calib B (thresholds)"
    )

    cal = RiskCalibration.fit_reference(risk, [s for ep in scored_a for s in ep.scores])
    cal.info["threshold_episode_max_risk"] = [float(v) for v in episode_max_risks(cal, scored_b)]
    retarget(cal, stop_alpha=stop_alpha, slow_alpha=slow_alpha)
    n_dec = sum(len(ep.scores) for ep in scored_a + scored_b)
    cal.info.update(
        {
            "method": "split-conformal on per-episode maximum risk (decisions every "
            f"{stride} frames); risk = max over signals of the in-distribution CDF",
            "decision_stride": stride,
            "data": {
                "dataset": str(Path(data).resolve()),
                "split": split,
                "scale_episodes": [r["id"] for r in half_a],
                "threshold_episodes": [r["id"] for r in half_b],
                "decisions": n_dec,
            },
            "reference_cell": np.mean(
                [c for ep in scored_a for c in ep.cell_conf], axis=0
            ).tolist(),
            "reference_step": np.mean(
                [c for ep in scored_a for c in ep.step_conf], axis=0
            ).tolist(),
            "backend": monitor.backend_name,
        }
    )
    verify = None
    if verify_split:
        test = ds.select(split=verify_split, shift=None).index[: limit or None]
        scored_t = run_raw(
            monitor, ds, test, stride=stride, progress=progress, desc=f"verify ({verify_split})"
        )
        tmax = episode_max_risks(cal, scored_t)
        verify = {
            "split": verify_split,
            "episodes": len(test),
            "false_stop_rate": float(np.mean(tmax > cal.stop_threshold)),
            "false_slow_rate": float(np.mean(tmax > cal.slow_threshold)),
            "stop_bound": cal.info["stop_bound"],
            "slow_bound": cal.info["slow_bound"],
        }
        cal.info["verify"] = verify
    if write:
        update_calibration(bundle, cal.to_dict())
    seconds = time.perf_counter() - t0
    LOG.info(
        "calibrated %s in %.1f s: slow %.4f stop %.4f",
        bundle,
        seconds,
        cal.slow_threshold,
        cal.stop_threshold,
    )
    return CalibrationResult(cal, seconds, n_dec, verify)
