"""`world-monitor calibrate`: fit the risk scale and the SLOW/STOP thresholds of a bundle.

The guarantee we want is per **episode**: "at most ``stop_alpha`` (default 2%) of in-distribution
episodes ever reach STOP". A decision-level threshold would need α divided by the number of
decisions per episode, which is conservative when decisions are correlated (they are: frames a
few steps apart look alike). So we calibrate on each episode's **maximum** risk, which is exactly
the event "this episode would have been stopped", and the split-conformal quantile of those
maxima gives a finite-sample bound that holds for any correlation inside an episode:
``P(max risk of a new in-distribution episode > τ) ≤ 1 − k/(n+1) ≤ α``, with
``k = ⌈(n+1)(1−α)⌉`` (the k-th smallest calibration maximum is τ).

The calibration split is divided in two (alternating episodes): half **A** first fits the
probe's post-hoc recalibration (:mod:`world_monitor.uq.recalibration`: every confidence-derived
quantity below reads the recalibrated confidence), then the risk scale (each signal's
in-distribution CDF, the per-cell reconstruction statistics of ``recon_z``, and the reference
confidence maps used for localisation),
half **B** fits the thresholds on the resulting risk. Keeping them apart keeps the conformal
bound honest. With ``scale_split`` (``--scale-split val``) half A is that other split instead
and every calibration episode is a threshold episode: twice as many order statistics under the
threshold, a false-stop rate closer to the target. On the ``episode`` scale (the default since
v0.8, :attr:`RiskConfig.scale`) each signal's reference is the scale episodes' maxima of it,
so the fused risk compares like with like across signals
(:meth:`RiskCalibration.signal_risk`). The ``colour`` signal's palette is fitted before
either, on the training split (:func:`fit_colour`): it describes what the model was trained
on, and touches neither half.
The episodes, their decisions, the bound and, optionally, the rate achieved on the
in-distribution test split are written into ``calibration.json`` with everything else.

**A rate the data cannot certify is an error, not a warning.** With ``n`` threshold episodes the
smallest rate the bound can certify is ``1/(n+1)`` (``k = n``); asking for less used to store
``stop: 1.0`` (a risk never exceeds it: a monitor that can never STOP) and report success.
:func:`calibrate_bundle` checks this before any rollout and :func:`retarget` again on the stored
maxima, raising :class:`CalibrationError` that names how many episodes the rate needs and the
smallest rate the data can certify.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.chunks import decision_points
from world_monitor.runtime.colour import ColourModel
from world_monitor.runtime.risk import (
    WORLD_MODEL_SIGNALS,
    RiskCalibration,
    RiskConfig,
    RiskError,
    confidence_summaries,
    constant_signals,
    episode_maxima,
    format_risk,
    recon_zscore,
)
from world_monitor.uq.recalibration import ConfidenceRecalibration

__all__ = [
    "CalibrationError",
    "CalibrationResult",
    "calibrate_bundle",
    "bundle_epsilon",
    "certify",
    "episode_max_risks",
    "episodes_needed",
    "retarget",
    "run_raw",
]

LOG = logging.getLogger(__name__)


class CalibrationError(RiskError):
    """The calibration cannot deliver what was asked (a user error: the CLI prints one line)."""


def bundle_epsilon(bundle: str | Path) -> float:
    """The bundle's runtime C³ tolerance (``model.rollout.epsilon``: 0.5, or the median of the
    data-driven ε grid it was trained on), the default ε to calibrate at."""
    from world_monitor.models.bundle import load_bundle

    rollout = load_bundle(bundle).config.get("model", {}).get("rollout", {})
    return float(rollout.get("epsilon", RiskConfig().epsilon))


def _certifies(n: int, alpha: float) -> bool:
    """Whether ``n`` exchangeable episodes certify ``alpha`` (the k of uq.detection <= n)."""
    return n >= 1 and math.ceil((n + 1) * (1.0 - alpha) - 1e-12) <= n


def episodes_needed(alpha: float) -> int:
    """The fewest threshold episodes whose split-conformal bound certifies ``alpha``."""
    n = max(1, math.floor(1.0 / alpha) - 2)
    while not _certifies(n, alpha):
        n += 1
    return n


def certify(n: int, alpha: float, level: str, *, per_calibration_episode: int = 2) -> None:
    """Raise :class:`CalibrationError` unless ``n`` threshold episodes certify ``alpha``.

    ``per_calibration_episode``: calibration episodes per threshold episode (the split is
    halved, so 2), to say how many the *dataset* needs."""
    if _certifies(n, alpha):
        return
    need = episodes_needed(alpha)
    raise CalibrationError(
        f"{level} rate {alpha:g} cannot be certified: the split-conformal bound needs >= "
        f"{need} threshold episodes ({need * per_calibration_episode} calibration episodes), "
        f"have {n}; the smallest rate these {n} can certify is {1.0 / (n + 1):.4g} "
        f"(pass a rate >= that, or calibrate on more episodes)"
    )


@dataclass
class EpisodeScores:
    """Raw signals of every decision of one episode, plus the confidence summaries."""

    episode_id: str
    steps: list[int]
    scores: list[dict[str, float]]
    cell_conf: np.ndarray  # [D, h, w] per decision: channel mean, worst step
    step_conf: np.ndarray  # [D, H]
    recon_cells: np.ndarray  # [D, H/4, W/4] per-cell reconstruction error of the newest frame


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
    """Roll the monitor out at every ``stride``-th frame of each episode; raw signals only.

    Each episode starts with a fresh decision history and stamps its decisions ``t / fps``, as
    the live session does, so the ``motion`` signal is computed exactly as at run time."""
    from tqdm import tqdm

    from world_monitor.runtime.monitor import runtime_inputs

    out = []
    for rec in tqdm(records, desc=desc, unit="ep", disable=not progress):
        ep = dataset.load(rec["id"])
        period = 1.0 / float(ep.meta.fps)
        if abs(period - monitor.motion.frame_period_s) > 1e-9:
            raise ValueError(
                f"episode {rec['id']}: camera period {period} s differs from the monitor's "
                f"{monitor.motion.frame_period_s} s (one camera rate per calibration)"
            )
        monitor.reset()
        steps, scores, cells, stepc, recon = [], [], [], [], []
        for point in decision_points(ep, monitor.context_length, monitor.horizon, stride):
            raw = monitor.raw(*runtime_inputs(point), stamp=point.t * period)
            cell, step = confidence_summaries(raw.confidence)
            steps.append(point.t)
            scores.append(raw.scores)
            cells.append(cell)
            stepc.append(step)
            recon.append(raw.recon_cells)
        out.append(
            EpisodeScores(
                rec["id"], steps, scores, np.asarray(cells), np.asarray(stepc), np.asarray(recon)
            )
        )
    return out


def add_recon_z(episodes: Sequence[EpisodeScores], mean: np.ndarray, std: np.ndarray) -> None:
    """Every decision's ``recon_z`` from its cell errors with these statistics (for the
    episodes scored before the statistics existed)."""
    for ep in episodes:
        for scores, cells in zip(ep.scores, ep.recon_cells, strict=True):
            scores["recon_z"] = recon_zscore(cells, mean, std)


def _halves(
    ds: Any,
    data: str | Path,
    split: str,
    scale_split: str | None,
    records: Sequence[Any],
    limit: int | None,
) -> tuple[list[Any], list[Any], str]:
    """(scale episodes A, threshold episodes B, the split A comes from).

    By default the calibration split is halved (alternating episodes). With ``scale_split``
    (e.g. ``val``: in-distribution episodes training only reports a loss on, that no threshold
    uses) the scale is fitted there and **every** calibration episode fits the thresholds. The
    bound needs the threshold episodes exchangeable with the deployed ones and the scale fixed
    before them, nothing else, so which split fits the scale does not weaken it. Why: the conformal
    threshold is an order statistic of the B maxima; with 100 of them the false-stop rate it
    delivers varies by about ±1.4 points around α from one calibration draw to the next
    (measured on the default dataset: 7/200 test episodes stopped at α = 0.02 with 100 threshold
    episodes), with 200 by about ±1.
    """
    if scale_split is None:
        if len(records) < 20:
            raise CalibrationError(
                f"{data}: split {split!r} has {len(records)} in-distribution episodes; need >= 20"
            )
        return list(records[0::2]), list(records[1::2]), split
    if scale_split == split:
        raise CalibrationError(
            f"--scale-split {scale_split!r} must differ from the split {split!r}"
        )
    scale = ds.select(split=scale_split, shift=None).index[: limit or None]
    if len(scale) < 10 or len(records) < 10:
        raise CalibrationError(
            f"{data}: splits {scale_split!r} / {split!r} have {len(scale)} / {len(records)} "
            "in-distribution episodes; need >= 10 each"
        )
    return list(scale), list(records), scale_split


def _fit_scale(risk: RiskConfig, scored: Sequence[EpisodeScores]) -> RiskCalibration:
    """The per-signal references of the scale half, on the configured scale."""
    if risk.scale == "episode":
        return RiskCalibration.fit_episode_reference(risk, [ep.scores for ep in scored])
    return RiskCalibration.fit_reference(risk, [s for ep in scored for s in ep.scores])


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
        raise CalibrationError(
            "calibration has no stored episode maxima; re-run `world-monitor calibrate`"
        )
    levels = [(lv, a) for lv, a in (("stop", stop_alpha), ("slow", slow_alpha)) if a is not None]
    for level, alpha in levels:  # all checked before anything is changed
        if not 0.0 < float(alpha) < 1.0:
            raise CalibrationError(f"{level} rate must be in (0, 1), got {alpha!r}")
        certify(int(maxima.size), float(alpha), level.upper())
    for level, alpha in levels:
        ct = episode_conformal_threshold(maxima, alpha)
        if np.isfinite(ct.threshold) and ct.threshold >= 1.0:
            # the quantile is a risk that rounds to 1.0 (a signal far out in its fitted tail):
            # "risk > 1" can never happen, so this level would silently never trigger
            raise CalibrationError(
                f"{level} threshold: {int(np.sum(maxima >= 1.0))} of {maxima.size} "
                "in-distribution threshold episodes reach risk 1.0, so no risk could exceed "
                "the threshold; a fused signal's in-distribution tail is heavier than the "
                "scale half showed: calibrate on more episodes or drop that signal"
            )
        setattr(calibration, f"{level}_threshold", float(min(1.0, ct.threshold)))
        calibration.info[f"{level}_alpha"] = alpha
        calibration.info[f"{level}_bound"] = float(ct.bound)
    calibration.slow_threshold = min(calibration.slow_threshold, calibration.stop_threshold)
    return calibration


def fit_recalibration(
    bundle: str | Path, episodes: Any, *, windows: int, progress: bool = True
) -> ConfidenceRecalibration:
    """The probe's post-hoc recalibration (:mod:`world_monitor.uq.recalibration`), fitted on
    ``windows`` rollouts of ``episodes`` (the scale half of the calibration split) with the real
    future as the label, exactly as ``evaluate-model`` scores the confidence."""
    from world_monitor.models.bundle import load_bundle
    from world_monitor.models.world_model import WorldModel
    from world_monitor.training.evaluate import (
        EvalOptions,
        fit_probe_recalibration,
        select_windows,
    )

    model = WorldModel.from_bundle(load_bundle(bundle))
    length = model.config.context_length + model.config.horizon
    wins = select_windows(episodes, length, 2, windows, 0, after_onset=False)
    if not wins:
        raise ValueError(f"no calibration window of {length} frames to recalibrate the probe on")
    t0 = time.perf_counter()
    recal = fit_probe_recalibration(
        model, episodes, wins, EvalOptions(progress=progress), info={"split": "calib, scale half"}
    )
    LOG.info(
        "probe recalibration fitted on %d windows in %.1f s", len(wins), time.perf_counter() - t0
    )
    return recal


def fit_colour(
    dataset: Any,
    fallback: Sequence[Any],
    *,
    episodes: int = 400,
    every: int = 5,
    progress: bool = True,
) -> ColourModel:
    """The in-distribution colour palette of the ``colour`` signal: from the dataset's
    training split (the colours the world model was trained on; ``episodes`` of them, every
    ``every``-th frame: the palette's per-episode jitter needs many episodes, not many frames),
    or from ``fallback`` (the scale half) when the dataset has no training split."""
    from tqdm import tqdm

    train = dataset.select(split="train", shift=None).index
    source, records = ("train", train[:episodes]) if len(train) >= 20 else ("scale", fallback)
    return ColourModel.fit(
        (
            dataset.load(r["id"]).frames[::every]
            for r in tqdm(records, desc="colour palette", unit="ep", disable=not progress)
        ),
        fitted_on={"split": source, "episodes": len(records), "frame_every": every},
    )


def calibrate_bundle(
    bundle: str | Path,
    data: str | Path,
    *,
    risk: RiskConfig | None = None,
    stop_alpha: float = 0.02,
    slow_alpha: float = 0.10,
    stride: int = 4,
    split: str = "calib",
    scale_split: str | None = None,
    verify_split: str | None = "test",
    limit: int | None = None,
    backend: str | Sequence[str] | None = ("onnxruntime", "torch"),
    engines_dir: str | Path = "engines",
    progress: bool = True,
    write: bool = True,
    recalibrate_probe: bool = True,
    recalibration_windows: int = 128,
) -> CalibrationResult:
    """Fit and (by default) write the bundle's calibration.json; see the module docstring."""
    from world_monitor.data import EpisodeDataset
    from world_monitor.models.bundle import update_calibration
    from world_monitor.runtime.monitor import Monitor

    if not 0 < stop_alpha <= slow_alpha < 1:
        raise CalibrationError(
            f"need 0 < stop_alpha ({stop_alpha}) <= slow_alpha ({slow_alpha}) < 1"
        )
    t0 = time.perf_counter()
    risk = risk or RiskConfig(epsilon=bundle_epsilon(bundle), scale="episode")
    # the data first: an uncertifiable rate must fail in a second, not after the rollouts
    ds = EpisodeDataset(data)
    records = ds.select(split=split, shift=None).index[: limit or None]
    half_a, half_b, scale_from = _halves(ds, data, split, scale_split, records, limit)
    for level, alpha in (("STOP", stop_alpha), ("SLOW", slow_alpha)):
        certify(len(half_b), alpha, level, per_calibration_episode=1 if scale_split else 2)
    monitor = Monitor.from_bundle(
        bundle, backend, engines_dir=engines_dir, epsilon=risk.epsilon, ignore_calibration=True
    )
    monitor.risk_config = risk
    monitor.rollout.epsilon = risk.epsilon
    frame_period = 1.0 / float(ds.load(records[0]["id"]).meta.fps)
    monitor.configure_motion(frame_period, min(stride, monitor.horizon))
    # the probe's post-hoc recalibration first: every confidence-derived signal below reads it
    recal = None
    if recalibrate_probe:
        recal = fit_recalibration(
            bundle,
            ds.select(split=scale_from, shift=None, ids=[r["id"] for r in half_a]),
            windows=recalibration_windows,
            progress=progress,
        )
    monitor.recalibration = recal
    monitor.recon_stats = None  # not the previous calibration's: fitted on half A below
    monitor.colour_model = fit_colour(ds, half_a, progress=progress)
    scored_a = run_raw(
        monitor, ds, half_a, stride=stride, progress=progress, desc="calib A (scale)"
    )
    # recon_z: each cell's error in units of its own spread on half A (the scale half); from
    # here on the monitor computes it itself, half A gets it afterwards
    cells_a = np.concatenate([ep.recon_cells for ep in scored_a])
    cell_mean, cell_std = cells_a.mean(axis=0), cells_a.std(axis=0)
    add_recon_z(scored_a, cell_mean, cell_std)
    monitor.recon_stats = (cell_mean, cell_std)
    scored_b = run_raw(
        monitor, ds, half_b, stride=stride, progress=progress, desc="calib B (thresholds)"
    )
    decisions_a = [s for ep in scored_a for s in ep.scores]
    cal = _fit_scale(risk, scored_a)
    excluded = constant_signals(cal.reference)
    for name, why in constant_signals(cal.episode_reference).items():
        excluded.setdefault(name, why.replace("calibration decisions", "episodes' maxima"))
    if excluded:
        kept = tuple(s for s in risk.signals if s not in excluded)
        if not kept:
            raise CalibrationError(
                f"every signal is constant on the calibration decisions ({excluded}); the "
                "bundle cannot tell these episodes apart: train longer or record more varied "
                "episodes"
            )
        for name, why in excluded.items():
            LOG.warning("signal %s: %s", name, why)
        risk = dataclasses.replace(risk, signals=kept)
        monitor.risk_config = risk
        cal = _fit_scale(risk, scored_a)
        cal.info["excluded_signals"] = excluded
    cal.info["threshold_episode_max_risk"] = [float(v) for v in episode_max_risks(cal, scored_b)]
    # scale references of the world model's own signals, fused or not: `evaluate` reports how
    # much of the detection they carry without the input-side heuristics (its world_model row)
    cal.info["world_model_reference"] = {
        name: sorted(float(d[name]) for d in decisions_a if name in d)
        for name in WORLD_MODEL_SIGNALS
    }
    if risk.scale == "episode":  # the same fusion for the world_model detector
        maxima = episode_maxima([ep.scores for ep in scored_a], WORLD_MODEL_SIGNALS)
        cal.info["world_model_episode_reference"] = {k: v.tolist() for k, v in maxima.items()}
    retarget(cal, stop_alpha=stop_alpha, slow_alpha=slow_alpha)
    n_dec = sum(len(ep.scores) for ep in scored_a + scored_b)
    cal.info.update(
        {
            "method": "split-conformal on per-episode maximum risk (decisions every "
            f"{stride} frames, each episode with a fresh decision history); risk = max over "
            "signals of the in-distribution CDF with an exponential tail, of "
            + (
                "episodes' maxima of the signal (scale half)"
                if risk.scale == "episode"
                else "decisions (scale half)"
            ),
            "decision_stride": stride,
            "frame_period_s": frame_period,
            "recon_cell_mean": cell_mean.tolist(),
            "recon_cell_std": cell_std.tolist(),
            "data": {
                "dataset": str(Path(data).resolve()),
                "split": split,
                "scale_split": scale_from,
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
    if recal is not None:
        cal.info["probe_recalibration"] = recal.to_dict()
    cal.info["colour_model"] = monitor.colour_model.to_dict()
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
        "calibrated %s in %.1f s: slow %s stop %s",
        bundle,
        seconds,
        format_risk(cal.slow_threshold),
        format_risk(cal.stop_threshold),
    )
    return CalibrationResult(cal, seconds, n_dec, verify)
