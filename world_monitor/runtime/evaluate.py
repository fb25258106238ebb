"""`world-monitor evaluate`: does the calibrated monitor detect shifts, stop before failures, and
point at the right place — measured against baselines run in the same pass.

Why one pass: detection claims are only comparable when every detector scores exactly the same
decisions (conventions: AUROC / TPR at a fixed false-alarm rate, against baselines run in the same
script). So the monitor is rolled out once per decision point — the same points as calibration
and replay (:func:`world_monitor.data.chunks.decision_points`, every ``stride`` frames) — and each
decision is scored by

* the **monitor** risk (the bundle's calibrated, fused risk, what the gate acts on) and each raw
  signal alone (``c3_mean``, ``c3_fraction``, ``c3_min_step``, ``recon``);
* baselines (:mod:`world_monitor.runtime.baselines`): seed spread of the sampled prediction
  (diffusion-noise heuristic), disagreement with an ensemble of other bundles, VAE
  reconstruction error (= ``recon``), and the after-the-fact oracle prediction error.

Labels. Negatives are the in-distribution test split. Positives of a shift family are its test
episodes; for a mid-episode onset only decisions at ``t >= onset`` count as shifted (earlier ones
are in-distribution inputs and are used for the pre-onset false-stop rate instead). An episode's
score is its maximum over the decisions that carry its label (all decisions for in-distribution
episodes, post-onset ones for shifted episodes) — the event "this episode would have raised an
alarm because of the shift", which is also what the per-episode conformal thresholds bound.

A decision whose chunk lies outside the bundle's training action range is scored as the
deployed monitor treats it (:meth:`Monitor.assess <world_monitor.runtime.monitor.Monitor.assess>`
and :class:`~world_monitor.runtime.session.MonitorSession` refuse it: STOP
``action_out_of_range``, no rollout): ``monitor`` 1.0 (above any loadable STOP threshold, which
is < 1), every other detector NaN, and the decision counted per family under
``refused_decisions``. Why: otherwise the evaluation would score, and report detection numbers
for, commands the gate never lets through.

Everything is deterministic: fixed sampling seeds, fixed episode order, 1 torch thread by default.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.dataset import json_default
from world_monitor.runtime.baselines import (
    MC_DROPOUT_NOTE,
    EnsembleBaseline,
    oracle_error,
    sample_spread,
)
from world_monitor.runtime.monitor import runtime_inputs
from world_monitor.runtime.peers import PEER_DETECTORS, PEER_LABELS, PeerDetectors, fit_peers
from world_monitor.runtime.risk import (
    format_risk,
    selfcheck_drift_bound,
    world_model_calibration,
)
from world_monitor.runtime.severity import (
    format_severity_markdown,
    plot_severity,
    require_sweepable,
    simulate_sweep,
)
from world_monitor.runtime.types import Reason
from world_monitor.uq.detection import (
    auroc,
    first_alarm_step,
    lead_time,
    roc,
    tpr_at_fpr,
    wilson_interval,
)
from world_monitor.uq.localization import (
    Box,
    box_from_mask,
    box_iou,
    onset_time_distance,
    score_localization,
)

__all__ = [
    "BASELINES",
    "DETECTORS",
    "DecisionScore",
    "EpisodeEval",
    "EvaluateOptions",
    "compute_metrics",
    "detection",
    "evaluate_bundle",
    "format_table",
    "localisation",
    "calibration_drift_counts",
    "calibration_drift_lines",
    "localisation_goals",
    "localisation_lines",
    "select_test_records",
    "side_by_side",
    "side_by_side_lines",
    "stop_before_failure",
]

LOG = logging.getLogger(__name__)

ID_FAMILY = "in_distribution"
SIGNAL_DETECTORS = (
    "monitor",
    "world_model",
    "c3_mean",
    "c3_fraction",
    "c3_min_step",
    "recon",
    "recon_patch",
    "recon_z",
    "colour",
    "motion",
    "selfcheck",
)
#: Baselines selectable with ``--baselines`` (``recon`` is always computed: it is a monitor signal).
BASELINES = ("spread", "ensemble", "recon", "oracle", "fiper", "fail_detect")
DETECTORS = (*SIGNAL_DETECTORS, "sample_spread", "ensemble", "oracle", *PEER_DETECTORS)
#: which ``--baselines`` name turns each peer detector on
PEER_BASELINE = {k: "fail_detect" if k == "fail_detect" else "fiper" for k in PEER_DETECTORS}
DETECTOR_LABELS = {
    "monitor": "the monitor: the gate's calibrated, fused risk",
    "world_model": "the world model's own signals fused (C³ summaries, motion, selfcheck; no "
    "colour/recon)",
    "c3_mean": "c3_mean alone",
    "c3_fraction": "c3_fraction alone",
    "c3_min_step": "c3_min_step alone",
    "recon": "VAE reconstruction error (recon)",
    "recon_patch": "VAE reconstruction error, worst 4x4-pixel cells (recon_patch)",
    "recon_z": "VAE reconstruction error, worst cell in in-distribution std (recon_z)",
    "colour": "novelty of the frame's rarest colours against the in-distribution palette (colour)",
    "motion": "observed vs predicted motion since the last rollout (motion)",
    "selfcheck": "C³ confidence of earlier rollouts scored against the frames that arrived "
    "(selfcheck)",
    "sample_spread": "diffusion sample spread over seeds",
    "ensemble": "latent-ensemble disagreement (decoded)",
    "oracle": "oracle: true prediction error (after the fact)",
    **PEER_LABELS,
}
#: Families whose shift occupies a local region of the frame (issue 16 §5: box IoU goal).
LOCAL_FAMILIES = ("unseen_object", "distractor", "ee_appearance")
#: Families whose shift changes the whole frame: scored with the whole frame as the truth box.
WHOLE_FRAME_FAMILIES = ("lighting", "table_color", "camera_pose")
#: DeepTraceReward-style localisation goals (issue 16 §5).
IOU_GOAL = 0.5
ONSET_GOAL_PCT = 10.0
#: Appearance families: the shift is visible in the camera frame itself.
APPEARANCE_FAMILIES = (
    "lighting",
    "unseen_object",
    "distractor",
    "camera_pose",
    "table_color",
    "ee_appearance",
)


# ------------------------------------------------------------------------------------- records
@dataclass
class DecisionScore:
    """One decision: its frame, whether the shift is active, every detector's score, the alert box.

    ``scores`` holds NaN for a detector that was not run or is undefined at this decision (the
    oracle has no future frame at the episode's last frame).
    """

    t: int
    post: bool
    scores: dict[str, float]
    box: Box | None = None
    true_box: Box | None = None
    #: why the deployed monitor would refuse this decision unassessed (``action_out_of_range``)
    refused: str | None = None


@dataclass
class EpisodeEval:
    """One evaluated episode with what the metrics need from its record."""

    id: str
    family: str
    onset: int | None
    failure_step: int | None
    length: int
    fps: float
    decisions: list[DecisionScore] = field(default_factory=list)

    @property
    def shifted(self) -> bool:
        return self.family != ID_FAMILY

    def labelled(self) -> list[DecisionScore]:
        """Decisions that carry the episode's label (post-onset ones for a shifted episode)."""
        return [d for d in self.decisions if d.post] if self.shifted else list(self.decisions)

    def max_score(self, detector: str) -> float:
        vals = [d.scores.get(detector, math.nan) for d in self.labelled()]
        vals = [v for v in vals if not math.isnan(v)]
        return max(vals) if vals else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "onset": self.onset,
            "failure_step": self.failure_step,
            "length": self.length,
            "fps": self.fps,
            "decisions": [
                {
                    "t": d.t,
                    "post_onset": d.post,
                    **{k: _num(v) for k, v in d.scores.items()},
                    "box": list(d.box) if d.box else None,
                    "true_box": list(d.true_box) if d.true_box else None,
                    "refused": d.refused,
                }
                for d in self.decisions
            ],
        }


def _num(v: float | None) -> float | None:
    """JSON-safe number: NaN/inf become null (strict JSON has no NaN)."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# ------------------------------------------------------------------------------- metric pieces
def detection(
    negatives: Sequence[float], positives: Sequence[float], *, fpr: float = 0.05
) -> dict[str, Any]:
    """AUROC and TPR at a fixed false-positive rate, positives vs negatives (NaNs dropped).

    Returns ``None`` metrics when either side is empty, rather than a made-up number.
    """
    neg = np.asarray([v for v in negatives if not math.isnan(v)], dtype=np.float64)
    pos = np.asarray([v for v in positives if not math.isnan(v)], dtype=np.float64)
    out: dict[str, Any] = {"n_neg": int(neg.size), "n_pos": int(pos.size)}
    if neg.size == 0 or pos.size == 0:
        return {**out, "auroc": None, f"tpr_at_fpr{fpr:g}": None}
    scores = np.concatenate([neg, pos])
    labels = np.concatenate([np.zeros(neg.size, int), np.ones(pos.size, int)])
    return {
        **out,
        "auroc": float(auroc(scores, labels)),
        f"tpr_at_fpr{fpr:g}": float(tpr_at_fpr(scores, labels, fpr)),
    }


def stop_before_failure(
    steps: Sequence[int],
    risks: Sequence[float],
    failure_step: int,
    threshold: float,
    fps: float,
) -> tuple[bool, float | None]:
    """Was the first STOP (risk > threshold) strictly before the failure, and by how many seconds?

    Uses the first alarm of the whole episode: that STOP is what halts the robot, so a later
    alarm never happens in practice. Lead time = (failure_step − stop step) / fps
    (:func:`~world_monitor.uq.detection.lead_time`); None if there was no stop before the failure.
    """
    idx = first_alarm_step(np.asarray(risks, dtype=np.float64), threshold)
    if idx is None:
        return False, None
    lead = lead_time(int(steps[idx]), int(failure_step), fps)
    if lead is None or lead <= 0:
        return False, None
    return True, float(lead)


def localisation(episodes: Sequence[EpisodeEval], slow: float) -> dict[str, Any]:
    """DeepTraceReward-style scores of the alerts (risk > SLOW after onset) on shifted episodes.

    Per episode: detected = any post-onset alert; the box is the monitor's box of the **first**
    post-onset alert, compared with the ground-truth mask box of that decision's frame; the onset
    distance compares the first alarm of the whole episode (pre-onset false alarms count against
    it) with the true onset, as % of the episode length. Box metrics use only episodes that have
    a ground-truth box (shifts without a visible region, e.g. dynamics, have none); undetected
    ones count as IoU 0 (as in DeepTraceReward). ``alert_iou_mean`` averages IoU over every
    post-onset alert with a ground-truth box.
    """
    if not episodes:
        return {"n": 0}
    detected, pred_boxes, true_boxes, onsets_pred, onsets_true, lengths = [], [], [], [], [], []
    tds, alert_ious = [], []
    for ep in episodes:
        first_any = next((d.t for d in ep.decisions if d.scores["monitor"] > slow), None)
        post_alerts = [d for d in ep.decisions if d.post and d.scores["monitor"] > slow]
        true_onset = ep.onset or 0
        tds.append(onset_time_distance(first_any, true_onset, ep.length))
        alert_ious += [box_iou(d.box, d.true_box) for d in post_alerts if d.true_box]
        first = post_alerts[0] if post_alerts else None
        true_box = first.true_box if first else _first_true_box(ep)
        if true_box is None:
            continue
        detected.append(first is not None)
        pred_boxes.append(first.box if first else None)
        true_boxes.append(true_box)
        onsets_pred.append(first_any)
        onsets_true.append(true_onset)
        lengths.append(ep.length)
    out: dict[str, Any] = {
        "n": len(episodes),
        "time_distance_pct": float(np.mean(tds)),
        "detected_pct": 100.0
        * float(
            np.mean(
                [any(d.post and d.scores["monitor"] > slow for d in e.decisions) for e in episodes]
            )
        ),
        "n_with_true_box": len(detected),
        "alert_iou_mean": float(np.mean(alert_ious)) if alert_ious else None,
        "n_alerts_with_true_box": len(alert_ious),
    }
    if detected:
        score = score_localization(
            detected, pred_boxes, true_boxes, onsets_pred, onsets_true, lengths
        )
        out["deeptrace"] = score.to_dict()  # iou ×100, centre distance, time distance %, overall
        out["box_iou"] = score.iou / 100.0
        out["center_distance"] = score.center_distance
    else:
        out["deeptrace"], out["box_iou"], out["center_distance"] = None, None, None
    return out


def localisation_goals(families: Mapping[str, Any]) -> dict[str, Any]:
    """Each family's localisation against the goals: box IoU ≥ :data:`IOU_GOAL` where the shift
    is local, onset distance ≤ :data:`ONSET_GOAL_PCT` % everywhere. Whole-frame shifts are
    scored against their ground-truth mask, which the simulator makes the whole frame."""
    out = {}
    for fam, m in families.items():
        loc = m.get("localisation", {})
        iou, onset = loc.get("box_iou"), loc.get("time_distance_pct")
        kind = (
            "local"
            if fam in LOCAL_FAMILIES
            else "whole frame"
            if fam in WHOLE_FRAME_FAMILIES
            else "not visible"
        )
        out[fam] = {
            "kind": kind,
            "box_iou": iou,
            "center_distance": loc.get("center_distance"),
            "onset_distance_pct": onset,
            "iou_goal_met": (iou is not None and iou >= IOU_GOAL) if kind == "local" else None,
            "onset_goal_met": onset is not None and onset <= ONSET_GOAL_PCT,
        }
    return out


def localisation_lines(report: Mapping[str, Any]) -> list[str]:
    """The goals table of :func:`localisation_goals` as markdown."""
    goals = report.get("localisation_goals") or {}
    if not goals:
        return []

    def met(v: bool | None) -> str:
        return "—" if v is None else ("met" if v else "**not met**")

    lines = [
        "## Localisation against the goals (issue 16 §5)",
        f"Box IoU ≥ {IOU_GOAL:g} on local shifts, onset distance ≤ {ONSET_GOAL_PCT:g} % of the "
        "episode on every family; whole-frame shifts are scored with the whole frame as the "
        "truth box (their ground-truth mask), a shift not visible in any frame (dynamics) by its "
        "onset only.",
        "",
        "| family | kind | box IoU | centre distance | onset distance % | IoU goal | onset goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for fam, g in goals.items():
        lines.append(
            f"| {fam} | {g['kind']} | {_f(g['box_iou'])} | {_f(g['center_distance'])} | "
            f"{_f(g['onset_distance_pct'], 1)} | {met(g['iou_goal_met'])} | "
            f"{met(g['onset_goal_met'])} |"
        )
    return [*lines, ""]


def _first_true_box(ep: EpisodeEval) -> Box | None:
    return next((d.true_box for d in ep.decisions if d.post and d.true_box), None)


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": (k / n) if n else None, "wilson95": [lo, hi]}


def _refusals(episodes: Sequence[EpisodeEval]) -> dict[str, int]:
    """Decisions the deployed monitor would refuse unassessed, per reason (module docstring)."""
    out: dict[str, int] = {}
    for e in episodes:
        for d in e.decisions:
            if d.refused is not None:
                out[d.refused] = out.get(d.refused, 0) + 1
    return out


def _failure_metrics(
    episodes: Sequence[EpisodeEval], stop: float, key: str = "monitor"
) -> dict[str, Any]:
    failing = [e for e in episodes if e.failure_step is not None]
    stopped, leads = 0, []
    for ep in failing:
        ok, lead = stop_before_failure(
            [d.t for d in ep.decisions],
            [d.scores.get(key, math.nan) for d in ep.decisions],
            int(ep.failure_step),  # type: ignore[arg-type]
            stop,
            ep.fps,
        )
        stopped += int(ok)
        if lead is not None:
            leads.append(lead)
    return {
        "failing_episodes": len(failing),
        "stopped_before_failure": _rate(stopped, len(failing)),
        "median_lead_time_s": float(np.median(leads)) if leads else None,
        "lead_times_s": leads,
    }


def _alarm_rates(episodes: Sequence[EpisodeEval], key: str, threshold: float) -> dict[str, Any]:
    """One detector used as the gate at ``threshold``: ID false stops, per-family TPR and
    failures stopped before they happened (first alarm of the whole episode, as
    :func:`stop_before_failure`)."""
    ind = [e for e in episodes if not e.shifted]
    shifted = [e for e in episodes if e.shifted]
    fams: dict[str, Any] = {}
    for fam in sorted({e.family for e in shifted}):
        scored = [e for e in shifted if e.family == fam and e.labelled()]
        hits = sum(e.max_score(key) > threshold for e in scored)
        fail = _failure_metrics([e for e in shifted if e.family == fam], threshold, key)
        fams[fam] = {"tpr": _rate(int(hits), len(scored)), **fail}
    pooled = _failure_metrics(shifted, threshold, key)
    tprs = [f["tpr"]["rate"] for f in fams.values() if f["tpr"]["rate"] is not None]
    return {
        "threshold": threshold if math.isfinite(threshold) else None,
        "id_false_stop": _rate(int(sum(e.max_score(key) > threshold for e in ind)), len(ind)),
        "mean_tpr": float(np.mean(tprs)) if tprs else None,
        "shifted_failures_stopped": pooled["stopped_before_failure"],
        "median_lead_time_s": pooled["median_lead_time_s"],
        "families": fams,
    }


def side_by_side(episodes: Sequence[EpisodeEval], alarms: Mapping[str, float]) -> dict[str, Any]:
    """The monitor and each peer as the gate, on the same episodes (issue 16 §4).

    Two operating points per detector: ``calibrated`` — its own conformal threshold at the same
    α on the same calibration split (what a user would deploy); ``matched`` — just above the
    highest score of any in-distribution test episode, i.e. every detector at 0 false stops on
    these episodes, so failures stopped are compared at an equal false-stop rate.
    """
    ind = [e for e in episodes if not e.shifted]
    out: dict[str, Any] = {}
    for key, thr in alarms.items():
        id_max = [e.max_score(key) for e in ind]
        id_max = [v for v in id_max if not math.isnan(v)]
        matched = max(id_max) if id_max else math.inf
        out[key] = {
            "calibrated": _alarm_rates(episodes, key, float(thr)),
            "matched": _alarm_rates(episodes, key, float(matched)),
        }
    return out


# ------------------------------------------------------------------------------ all the metrics
def compute_metrics(
    episodes: Sequence[EpisodeEval],
    *,
    slow: float,
    stop: float,
    detectors: Sequence[str],
    fpr: float = 0.05,
    alarms: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every number of the report from scored episodes (pure: no model, so it is unit-testable).

    ``alarms`` (detector → the score above which it stops the robot) adds the side-by-side
    comparison of gates; the monitor's is ``monitor`` at STOP.
    """
    ind = [e for e in episodes if not e.shifted]
    families = sorted({e.family for e in episodes if e.shifted})
    id_dec = {k: [d.scores.get(k, math.nan) for e in ind for d in e.decisions] for k in detectors}
    id_ep = {k: [e.max_score(k) for e in ind] for k in detectors}
    id_max_risk = np.asarray([e.max_score("monitor") for e in ind])
    out: dict[str, Any] = {
        ID_FAMILY: {
            "episodes": len(ind),
            "decisions": sum(len(e.decisions) for e in ind),
            "false_stop": _rate(int((id_max_risk > stop).sum()), len(ind)),
            "false_slow": _rate(int((id_max_risk > slow).sum()), len(ind)),
            "refused_decisions": _refusals(ind),
            **_failure_metrics(ind, stop),
        },
        "families": {},
    }
    for fam in families:
        eps = [e for e in episodes if e.family == fam]
        scored = [e for e in eps if e.labelled()]
        det: dict[str, Any] = {}
        for k in detectors:
            pos_dec = [d.scores.get(k, math.nan) for e in eps for d in e.labelled()]
            det[k] = {
                "decision": detection(id_dec[k], pos_dec, fpr=fpr),
                "episode": detection(id_ep[k], [e.max_score(k) for e in scored], fpr=fpr),
            }
        risk_max = np.asarray([e.max_score("monitor") for e in scored])
        mid = [e for e in eps if e.onset]
        pre_stop = sum(
            any(d.scores["monitor"] > stop for d in e.decisions if not d.post) for e in mid
        )
        out["families"][fam] = {
            "episodes": len(eps),
            "episodes_from_start": sum(1 for e in eps if not e.onset),
            "episodes_mid_onset": len(mid),
            "decisions_post_onset": sum(len(e.labelled()) for e in eps),
            "decisions_pre_onset": sum(len(e.decisions) - len(e.labelled()) for e in eps),
            "detectors": det,
            "tpr_at_stop": _rate(int((risk_max > stop).sum()), len(scored)),
            "tpr_at_slow": _rate(int((risk_max > slow).sum()), len(scored)),
            "false_stop_before_onset": _rate(int(pre_stop), len(mid)),
            "refused_decisions": _refusals(eps),
            **_failure_metrics(eps, stop),
            "localisation": localisation(eps, slow),
        }
    out["mean_over_families"] = _mean_over_families(out["families"], detectors)
    out["localisation_goals"] = localisation_goals(out["families"])
    out["dynamics_note"] = _dynamics_note(out["families"])
    if alarms:
        out["side_by_side"] = side_by_side(episodes, alarms)
    return out


def _ep_auroc(fam: Mapping[str, Any], k: str) -> float | None:
    return fam["detectors"][k]["episode"]["auroc"]


def _mean_over_families(families: Mapping[str, Any], detectors: Sequence[str]) -> dict[str, Any]:
    """Mean episode-level AUROC per detector over families, and the ranking (oracle included but
    flagged: it is a ceiling, not a run-time detector)."""
    means = {}
    for k in detectors:
        vals = [_ep_auroc(f, k) for f in families.values()]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        means[k] = float(np.mean(vals)) if vals else None
    ranked = sorted((k for k in means if means[k] is not None), key=lambda k: -means[k])
    return {"episode_auroc": means, "ranking": ranked}


def _dynamics_note(families: Mapping[str, Any]) -> str:
    """Say, with this run's numbers, whether the input-side and prediction-side signals split the
    way the feasibility study found (appearance in the input, dynamics only in the prediction)."""
    base = (
        "Appearance shifts change the camera frame itself, so the input-side VAE reconstruction "
        "error sees them; a dynamics shift (weaker motors) leaves every frame looking normal and "
        "shows only in what the commands achieve: the scene moves less than the "
        "action-conditioned prediction said (the motion signal, which compares each rollout "
        "with the frames that followed it)."
    )
    dyn = families.get("dynamics")
    if dyn is None:
        return base + " No dynamics family in this run."

    def fmt(fam: Mapping[str, Any], k: str) -> str:
        v = _ep_auroc(fam, k) if k in fam["detectors"] else None
        return "n/a" if v is None or math.isnan(v) else f"{v:.2f}"

    app = [f for name, f in families.items() if name in APPEARANCE_FAMILIES]
    app_recon = [_ep_auroc(f, "recon") for f in app if "recon" in f["detectors"]]
    app_recon = [v for v in app_recon if v is not None and not math.isnan(v)]
    tail = (
        f" Here: dynamics episode AUROC — recon {fmt(dyn, 'recon')}, c3_fraction "
        f"{fmt(dyn, 'c3_fraction')}, motion {fmt(dyn, 'motion')}, monitor "
        f"{fmt(dyn, 'monitor')}, oracle {fmt(dyn, 'oracle')}"
    )
    if app_recon:
        tail += f"; appearance families' mean recon AUROC {np.mean(app_recon):.2f}."
    return base + tail


# ------------------------------------------------------------------------------------ running
@dataclass
class EvaluateOptions:
    """How to run an evaluation (the CLI flags)."""

    stride: int = 4
    limit: int | None = None
    backend: str | Sequence[str] | None = ("onnxruntime", "torch")
    engines_dir: str | Path = "engines"
    baselines: Sequence[str] = BASELINES
    ensemble: Sequence[str | Path] = ()
    seeds: int = 4
    fpr: float = 0.05
    num_threads: int = 1
    progress: bool = True
    figures: bool = True
    command: str = ""
    #: severities to re-simulate the shifted test episodes at (:mod:`.severity`); () = no sweep
    severities: Sequence[float] = ()
    #: shifted test episodes per family in each sweep cell (both onsets, as ``limit``)
    severity_episodes: int = 10
    #: why no sweep was run, for the report, when ``severities`` is empty
    severity_note: str = "not run (no severities asked for)"


def select_test_records(ds: Any, limit: int | None) -> list[tuple[str, Any]]:
    """(family, record) pairs: ID test split then every shift family's test episodes, in index
    order; ``limit`` caps each family (taking from-start and mid-onset episodes alternately, so
    a small limit still has both onsets)."""
    out = [(ID_FAMILY, r) for r in ds.select(split="test", shift=None).index[: limit or None]]
    shifted = ds.select(split="test", shift="any").index
    for fam in sorted({r.shift for r in shifted}):
        recs = [r for r in shifted if r.shift == fam]
        if limit:
            start = [r for r in recs if not r.onset]
            mid = [r for r in recs if r.onset]
            mixed = [r for pair in zip(start, mid, strict=False) for r in pair]
            mixed += start[len(mid) :] + mid[len(start) :]
            recs = mixed[:limit]
        out += [(fam, r) for r in recs]
    return out


def _signal_detectors(monitor: Any) -> list[str]:
    """The per-signal detectors this bundle's calibration supports (``world_model`` needs the
    references that ``calibrate`` stores since issue 16)."""
    detectors = list(SIGNAL_DETECTORS)
    if world_model_calibration(monitor.calibration.info, monitor.risk_config.epsilon) is None:
        detectors.remove("world_model")
    return detectors


def _score_episode(
    monitor: Any,
    ds: Any,
    family: str,
    rec: Any,
    *,
    stride: int,
    spread_seeds: Sequence[int],
    ensemble: EnsembleBaseline | None,
    oracle: bool,
    peers: PeerDetectors | None = None,
) -> EpisodeEval:
    from world_monitor.data.chunks import decision_points

    ep = ds.load(rec["id"])
    onset = rec["onset"] if family != ID_FAMILY else None
    out = EpisodeEval(
        id=rec["id"],
        family=family,
        onset=onset,
        failure_step=rec["failure_step"],
        length=ep.length,
        fps=float(ep.meta.fps),
    )
    cal = monitor.calibration
    wm_cal = world_model_calibration(cal.info, monitor.risk_config.epsilon)
    action_range = getattr(monitor, "action_range", None)
    monitor.reset()  # a fresh decision history per episode, as in calibration
    if peers is not None:
        peers.reset()
    for p in decision_points(ep, monitor.context_length, monitor.horizon, stride):
        frames, chunk, context_actions = runtime_inputs(p)  # as the live session sees them
        post = family != ID_FAMILY and p.t >= (onset or 0)
        true_box = None
        if post and ep.shift_mask is not None:
            true_box = box_from_mask(ep.shift_mask[p.t])
        if action_range is not None and action_range.violation(chunk) is not None:
            # refused unassessed, as Monitor.assess does (no rollout, no motion history)
            scores = {k: math.nan for k in DETECTORS}
            scores["monitor"] = 1.0
            if peers is not None:
                peers.skip()
            out.decisions.append(
                DecisionScore(p.t, post, scores, None, true_box, Reason.action_out_of_range.value)
            )
            continue
        raw = monitor.raw(frames, chunk, context_actions, stamp=p.t / out.fps)
        scores = {k: float(v) for k, v in raw.scores.items()}
        scores["monitor"] = float(cal.risk(raw.scores))
        scores["world_model"] = float(wm_cal.risk(raw.scores)) if wm_cal else math.nan
        scores["sample_spread"] = (
            sample_spread(
                monitor.rollout,
                raw.context_latents,
                chunk,
                context_actions,
                raw.latents,
                spread_seeds,
            )
            if spread_seeds
            else math.nan
        )
        scores["ensemble"] = (
            ensemble.disagreement(
                monitor, frames, chunk, context_actions, raw.latents, monitor.seed
            )
            if ensemble
            else math.nan
        )
        scores["oracle"] = (
            oracle_error(
                monitor.backend, raw.latents, ep.frames[p.t + 1 : p.t + 1 + monitor.horizon]
            )
            if oracle
            else math.nan
        )
        if peers is not None:
            scores.update(peers.score(raw.context_latents[-1], chunk))
        box = None
        if scores["monitor"] > monitor.slow_threshold:
            box, _ = monitor.localise(
                raw.confidence,
                raw.recon_cells,
                cal.signal_risk(raw.scores),
                colour_cells=raw.colour_cells,
            )
        out.decisions.append(DecisionScore(p.t, post, scores, box, true_box))
    return out


def evaluate_bundle(
    bundle: str | Path,
    data: str | Path,
    out_dir: str | Path,
    options: EvaluateOptions | None = None,
) -> dict[str, Any]:
    """Run the evaluation (module docstring) and write evaluation.json / .md and ROC figures."""
    import torch
    from tqdm import tqdm

    from world_monitor.data import EpisodeDataset
    from world_monitor.models.bundle import bundle_hash
    from world_monitor.runtime.monitor import Monitor

    opts = options or EvaluateOptions()
    unknown = set(opts.baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"--baselines {sorted(unknown)}: choose from {list(BASELINES)}")
    if opts.stride < 1 or opts.seeds < 1:
        raise ValueError(f"stride ({opts.stride}) and seeds ({opts.seeds}) must be >= 1")
    if opts.severities:  # before any scoring, not after minutes of it
        require_sweepable(data)
    torch.set_num_threads(int(opts.num_threads))
    t0 = time.perf_counter()
    bundle, data, out_dir = Path(bundle), Path(data), Path(out_dir)
    monitor = Monitor.from_bundle(bundle, opts.backend, engines_dir=opts.engines_dir)
    ds = EpisodeDataset(data)
    records = select_test_records(ds, opts.limit)
    if not any(f == ID_FAMILY for f, _ in records):
        raise ValueError(f"{data}: no in-distribution test episodes to compare against")

    cal_stride = monitor.calibration.info.get("decision_stride")
    if cal_stride is not None and int(cal_stride) != opts.stride:
        LOG.warning(
            "evaluating every %d frames but the thresholds were calibrated every %s frames: the "
            "per-episode false-stop guarantee assumes the calibration stride",
            opts.stride,
            cal_stride,
        )
    use_spread = "spread" in opts.baselines and opts.seeds >= 2
    spread_seeds = [monitor.seed + 1 + i for i in range(opts.seeds - 1)] if use_spread else []
    ensemble = None
    if "ensemble" in opts.baselines and opts.ensemble:
        ensemble = EnsembleBaseline(
            opts.ensemble, backend=opts.backend, engines_dir=opts.engines_dir, reference=monitor
        )
    use_oracle = "oracle" in opts.baselines
    deterministic = getattr(monitor.rollout, "mode", "") == "deterministic"
    peers, peers_why = _fit_peers(monitor, ds, opts)
    detectors = _signal_detectors(monitor)
    detectors += ["sample_spread"] if use_spread and not deterministic else []
    detectors += ["ensemble"] if ensemble else []
    detectors += ["oracle"] if use_oracle else []
    if peers is not None:
        detectors += [k for k in PEER_DETECTORS if PEER_BASELINE[k] in opts.baselines]

    episodes = [
        _score_episode(
            monitor,
            ds,
            fam,
            rec,
            stride=opts.stride,
            spread_seeds=spread_seeds,
            ensemble=ensemble,
            oracle=use_oracle,
            peers=peers,
        )
        for fam, rec in tqdm(records, desc="evaluate", unit="ep", disable=not opts.progress)
    ]
    slow, stop = monitor.slow_threshold, monitor.stop_threshold
    alarms = {"monitor": stop}
    if peers is not None:
        alarms.update({k: v for k, v in peers.alarms().items() if k in detectors})
    metrics = compute_metrics(
        episodes, slow=slow, stop=stop, detectors=detectors, fpr=opts.fpr, alarms=alarms
    )
    metrics["calibration_drift"] = calibration_drift_counts(episodes, monitor.calibration.info)
    default_severity = {fam: rec["severity"] for fam, rec in records if fam != ID_FAMILY}
    sweep = run_severity_sweep(
        monitor, ds, data, episodes, metrics, default_severity, opts, out_dir
    )
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {
        "command": opts.command,
        "bundle": str(bundle.resolve()),
        "bundle_hash": bundle_hash(bundle),
        "dataset": str(data.resolve()),
        "backend": monitor.backend_name,
        "rollout_mode": getattr(monitor.rollout, "mode", None),
        "thresholds": {"slow": slow, "stop": stop},
        "calibration": {
            k: monitor.calibration.info.get(k)
            for k in ("stop_alpha", "slow_alpha", "stop_bound", "slow_bound", "decision_stride")
        },
        "risk": monitor.risk_config.to_dict(),
        "options": {
            "stride": opts.stride,
            "limit": opts.limit,
            "seeds": opts.seeds,
            "sampling_seeds": [monitor.seed, *spread_seeds],
            "baselines": list(opts.baselines),
            "ensemble": [str(p) for p in opts.ensemble],
            "fpr": opts.fpr,
            "num_threads": opts.num_threads,
        },
        "detectors": {k: DETECTOR_LABELS[k] for k in detectors},
        "baselines_status": {
            **_baseline_status(opts, ensemble, deterministic, use_spread),
            **_peer_status(opts, peers, peers_why),
        },
        "peers": peers.info if peers is not None else None,
        "definitions": DEFINITIONS,
        "severity_sweep": sweep,
        "seconds": seconds,
        **metrics,
        "episodes": [e.to_dict() for e in episodes],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    report["figures"] = plot_rocs(episodes, detectors, out_dir) if opts.figures else []
    if opts.figures and sweep["run"]:
        report["figures"].append(plot_severity(sweep, out_dir / "severity.png"))
    (out_dir / "evaluation.json").write_text(
        json.dumps(report, indent=1, default=json_default, allow_nan=False), encoding="utf-8"
    )
    (out_dir / "evaluation.md").write_text(format_markdown(report), encoding="utf-8")
    LOG.info("evaluated %d episodes in %.1f s -> %s", len(episodes), seconds, out_dir)
    return report


def calibration_drift_counts(
    episodes: Sequence[EpisodeEval], info: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Per family, episodes in which some decision's ``selfcheck`` exceeded every calibration
    value — the rule of :meth:`Monitor.calibration_drift
    <world_monitor.runtime.monitor.Monitor.calibration_drift>`, the node's ``/diagnostics``
    WARN — before and after the onset. ``None`` without the calibration's reference."""
    bound = selfcheck_drift_bound(info)
    if bound is None:
        return None
    fams: dict[str, dict[str, int]] = {}
    for ep in episodes:
        row = fams.setdefault(ep.family, {"episodes": 0, "before_onset": 0, "after_onset": 0})
        row["episodes"] += 1
        values = [(d.post, d.scores.get("selfcheck", math.nan)) for d in ep.decisions]
        pre = any(v > bound for post, v in values if not post and not math.isnan(v))
        post = any(v > bound for post, v in values if post and not math.isnan(v))
        row["before_onset"] += int(pre)
        row["after_onset"] += int(post)
    order = sorted(fams, key=lambda f: (f != ID_FAMILY, f))  # in-distribution first
    return {"bound": bound, "families": {f: fams[f] for f in order}}


def calibration_drift_lines(report: Mapping[str, Any]) -> list[str]:
    """A WARN line when in-distribution episodes drift (the calibration no longer describes
    the data), then the per-family counts."""
    drift = report.get("calibration_drift")
    if not drift:
        return []
    fams = drift["families"]
    ind = fams.get(ID_FAMILY, {"episodes": 0, "before_onset": 0})
    lines = []
    if ind["before_onset"]:
        lines.append(
            f"WARN calibration_drift: {ind['before_onset']} of {ind['episodes']} in-distribution "
            "episodes had a decision whose selfcheck exceeded every calibration value: the "
            "calibrated bounds may not describe this data"
        )
    lines += [
        f"## calibration_drift (selfcheck above its calibration maximum {drift['bound']:.4f})",
        "",
        "| family | episodes | drift before the onset | drift after the onset |",
        "|---|---|---|---|",
        *[
            f"| {f} | {r['episodes']} | {r['before_onset']} | "
            f"{r['after_onset'] if f != ID_FAMILY else '—'} |"
            for f, r in fams.items()
        ],
        "",
    ]
    return lines


def _fit_peers(monitor: Any, ds: Any, opts: EvaluateOptions) -> tuple[PeerDetectors | None, str]:
    """FIPER / FAIL-Detect fitted on this dataset's training and calibration splits, at the
    bundle's ``stop_alpha`` — or None and why not (not asked for, no such splits)."""
    if not {"fiper", "fail_detect"} & set(opts.baselines):
        return None, "not in --baselines"
    counts = {split: len(ds.select(split=split, shift=None).index) for split in ("train", "calib")}
    if counts["train"] < 1 or counts["calib"] < 2:
        return None, (
            f"the dataset has {counts['train']} training and {counts['calib']} calibration "
            "in-distribution episodes (the peers are fitted on >= 1 and thresholded on >= 2)"
        )
    alpha = float(monitor.calibration.info.get("stop_alpha") or 0.02)
    return fit_peers(monitor, ds, stride=opts.stride, alpha=alpha, progress=opts.progress), ""


def _peer_status(opts: EvaluateOptions, peers: PeerDetectors | None, why: str) -> dict[str, str]:
    out = {}
    for name in ("fiper", "fail_detect"):
        if name not in opts.baselines:
            out[name] = "not run (not in --baselines)"
        elif peers is None:
            out[name] = f"not run: {why}"
        else:
            info = peers.info
            out[name] = (
                f"run: fitted on {info['train_episodes']} training episodes "
                f"({info['train_decisions']} decisions), thresholds at α={info['alpha']:g} on "
                f"{info['calibration_episodes']['thresholds_half_b']} calibration episodes"
                + (
                    "; ACE is the entropy of the chunks published over the last "
                    f"{info['windows']['ace']} decisions (one chunk per decision is recorded, "
                    "not a batch of policy samples)"
                    if name == "fiper"
                    else "; RND score variant (logpZO not implemented)"
                )
            )
    return out


def _sweep_entry(family: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "episodes": family["episodes"],
        "auroc": family["detectors"]["monitor"]["episode"]["auroc"],
        "signal_auroc": {
            k: v["episode"]["auroc"] for k, v in family["detectors"].items() if k != "monitor"
        },
        "tpr_at_stop": family["tpr_at_stop"],
        "tpr_at_slow": family["tpr_at_slow"],
        "failing_episodes": family["failing_episodes"],
        "stopped_before_failure": family["stopped_before_failure"],
    }


def run_severity_sweep(
    monitor: Any,
    ds: Any,
    data: Path,
    episodes: Sequence[EpisodeEval],
    metrics: Mapping[str, Any],
    default_severity: Mapping[str, float | None],
    opts: EvaluateOptions,
    out_dir: Path,
) -> dict[str, Any]:
    """Score the main selection's shifted test episodes re-simulated at ``opts.severities``
    (:mod:`.severity`) against the main in-distribution episodes; the families' default-severity
    rows come from the main table. Returns ``{"run": False, "why": ...}`` when none is asked."""
    from tqdm import tqdm

    from world_monitor.data import EpisodeDataset

    if not opts.severities:
        return {"run": False, "why": opts.severity_note}
    picked = [r for f, r in select_test_records(ds, opts.severity_episodes) if f != ID_FAMILY]
    root = out_dir / "severity_data"
    simulate_sweep(data, picked, opts.severities, root, progress=opts.progress)
    swept = EpisodeDataset(root)
    families: dict[str, dict[str, Any]] = {}
    ind = [e for e in episodes if not e.shifted]
    for sev in opts.severities:
        recs = [swept.record(swept.position(f"{r['id']}-sev{sev:g}")) for r in picked]
        scored = [
            _score_episode(
                monitor,
                swept,
                rec["shift"],
                rec,
                stride=opts.stride,
                spread_seeds=[],
                ensemble=None,
                oracle=False,
            )
            for rec in tqdm(recs, desc=f"severity {sev:g}", unit="ep", disable=not opts.progress)
        ]
        cell = compute_metrics(
            [*ind, *scored],
            slow=monitor.slow_threshold,
            stop=monitor.stop_threshold,
            detectors=_signal_detectors(monitor),
            fpr=opts.fpr,
        )
        for fam, fm in cell["families"].items():
            families.setdefault(fam, {})[f"{sev:g}"] = _sweep_entry(fm)
    for fam, fm in metrics["families"].items():
        families.setdefault(fam, {})["default"] = {
            **_sweep_entry(fm),
            "severity": default_severity.get(fam),
        }
    return {
        "run": True,
        "severities": [float(s) for s in opts.severities],
        "episodes_per_family": opts.severity_episodes,
        "data": str(root),
        "families": dict(sorted(families.items())),
    }


def _baseline_status(
    opts: EvaluateOptions, ensemble: EnsembleBaseline | None, deterministic: bool, spread: bool
) -> dict[str, str]:
    def status(name: str, ok: bool, why_not: str, what: str) -> str:
        if name not in opts.baselines:
            return "not run (not in --baselines)"
        return what if ok else f"not run: {why_not}"

    return {
        "sample_spread": "not run: deterministic bundle (sampling seed has no effect, spread = 0)"
        if deterministic and "spread" in opts.baselines
        else status("spread", spread, "--seeds < 2", f"run: std over {opts.seeds} sampling seeds"),
        "ensemble": status(
            "ensemble",
            ensemble is not None,
            "no --ensemble bundle given (no numbers are made up)",
            f"run: {len(ensemble) if ensemble else 0} member bundle(s)",
        ),
        "recon": "run: the monitor's recon signal (always computed)",
        "oracle": status("oracle", "oracle" in opts.baselines, "", "run (after the fact)"),
        "mc_dropout": MC_DROPOUT_NOTE,
    }


DEFINITIONS = {
    "decision_auroc": "AUROC of per-decision scores: all ID-test decisions (0) vs post-onset "
    "decisions of the family (1)",
    "episode_auroc": "AUROC of per-episode max score: ID-test episodes (max over all decisions, "
    "0) vs the family's episodes (max over post-onset decisions, 1)",
    "tpr_at_fpr": "highest episode-level TPR with empirical ID false-positive rate <= fpr",
    "tpr_at_stop": "fraction of shifted episodes whose post-onset max monitor risk > STOP threshold "
    "(Wilson 95%)",
    "tpr_at_slow": "same with the SLOW threshold",
    "false_stop": "fraction of ID-test episodes whose max monitor risk > STOP (Wilson 95%)",
    "false_stop_before_onset": "fraction of mid-onset shifted episodes with risk > STOP at a "
    "decision before the onset",
    "stopped_before_failure": "among episodes with failure_step, the first decision with risk > "
    "STOP is at t < failure_step",
    "median_lead_time_s": "median of (failure_step - first stop step)/fps over episodes stopped "
    "before failure",
    "box_iou": "IoU of the monitor's box at the first post-onset alert (risk > SLOW) vs "
    "box_from_mask(shift_mask[t]) at that decision's frame; undetected = 0; episodes with a "
    "ground-truth box only",
    "center_distance": "distance of box centres, normalised image units (sqrt 2 if undetected)",
    "time_distance_pct": "100*|first alarm step (risk > SLOW, whole episode) - true onset| / "
    "episode length, 100 if no alarm",
    "sample_spread": "std over sampling seeds of the last predicted latent frame, mean over "
    "elements",
    "ensemble": "mean |decode(this prediction) - decode(member prediction)| over the H frames, "
    "mean over members (each bundle has its own VAE, so latents are compared after decoding)",
    "oracle": "mean |predicted latents - VAE(real frames t+1..t+H)|, truncated at episode end "
    "(undefined at the last frame)",
    "fiper": "min of FIPER's two indicators, each as (x - median)/(threshold - median) of its "
    "calibration half-B episode maxima, so > 1 means both exceed their conformal thresholds; "
    "RND-OE = RND error on the pooled VAE latent of the current frame, mean over the last 3 "
    "decisions; ACE = Gaussian-KDE entropy of the chunks of the last 4 decisions",
    "fail_detect": "RND error on (pooled latent, chunk) as a z-score against the per-decision-"
    "index mean and std of calibration half A, normalised as fiper to the conformal quantile "
    "(half B) of each episode's max z; > 1 = outside the time-varying band",
    "side_by_side": "each detector as the gate: `calibrated` at its own conformal threshold "
    "(same alpha, same calibration split), `matched` just above the highest in-distribution "
    "test-episode score (0 ID false stops for everyone); TPR = shifted episodes alarmed after "
    "onset, stopped<fail = failing shifted episodes whose first alarm precedes the failure",
}


# ------------------------------------------------------------------------------------ outputs
def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.{digits}f}"


def _rate_cell(r: Mapping[str, Any] | None) -> str:
    if not r or not r["n"]:
        return "—"
    lo, hi = r["wilson95"]
    return f"{r['rate']:.2f} [{lo:.2f},{hi:.2f}] ({r['k']}/{r['n']})"


def _short_rate(r: Mapping[str, Any] | None) -> str:
    if not r or not r["n"]:
        return "—"
    return f"{r['rate']:.2f} ({r['k']}/{r['n']})"


def format_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (rows = families, one ID row first)."""
    detectors = list(report["detectors"])
    fpr = report["options"]["fpr"]
    fpr_key = f"{fpr:g}FPR"
    baseline_cols = [k for k in detectors if k != "monitor"]
    header = [
        "family",
        "ep (shift)",
        "monitor AUROC ep/dec",
        f"monitor TPR@{fpr_key}",
        *[f"{k} ep" for k in baseline_cols],
        "TPR@STOP",
        "TPR@SLOW",
        "false-stop",
        "stopped<fail",
        "lead s (med)",
        "box IoU",
        "onset dist %",
    ]
    ind = report[ID_FAMILY]
    rows = [
        [
            ID_FAMILY,
            str(ind["episodes"]),
            "—",
            "—",
            *["—" for _ in baseline_cols],
            "—",
            "—",
            _rate_cell(ind["false_stop"]),
            _rate_cell(ind["stopped_before_failure"]),
            _f(ind["median_lead_time_s"]),
            "—",
            "—",
        ]
    ]
    for fam, m in report["families"].items():
        det = m["detectors"]
        loc = m["localisation"]
        rows.append(
            [
                fam,
                str(m["episodes"]),
                f"{_f(det['monitor']['episode']['auroc'])}/{_f(det['monitor']['decision']['auroc'])}",
                _f(det["monitor"]["episode"][f"tpr_at_fpr{fpr:g}"]),
                *[_f(det[k]["episode"]["auroc"]) for k in baseline_cols],
                _short_rate(m["tpr_at_stop"]),
                _short_rate(m["tpr_at_slow"]),
                _rate_cell(m["false_stop_before_onset"]),
                _rate_cell(m["stopped_before_failure"]),
                _f(m["median_lead_time_s"]),
                _f(loc.get("box_iou")),
                _f(loc.get("time_distance_pct"), 1),
            ]
        )
    mean = report["mean_over_families"]["episode_auroc"]
    rows.append(
        [
            "mean over families",
            "",
            _f(mean.get("monitor")),
            "",
            *[_f(mean.get(k)) for k in baseline_cols],
            *[""] * 7,
        ]
    )
    return header, rows


def format_markdown(report: Mapping[str, Any]) -> str:
    """The evaluation.md document: provenance, the table, baseline status, ranking, notes."""
    header, rows = format_table(report)
    lines = [
        "# Monitor evaluation",
        "",
        f"- command: `{report['command']}`",
        f"- bundle: `{report['bundle']}` (hash `{report['bundle_hash'][:16]}`)",
        f"- dataset: `{report['dataset']}`; backend {report['backend']}, rollout "
        f"{report['rollout_mode']}",
        f"- thresholds: SLOW > {format_risk(report['thresholds']['slow'])}, STOP > "
        f"{format_risk(report['thresholds']['stop'])}; risk signals {report['risk']['signals']} at "
        f"ε={report['risk']['epsilon']}",
        f"- decisions every {report['options']['stride']} frames; "
        f"{len(report['episodes'])} episodes in {report['seconds']:.0f} s",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        "Rates are `rate [Wilson 95%] (k/n)` (TPR columns: `rate (k/n)`, Wilson intervals in "
        "evaluation.json). `monitor TPR@…FPR` is the episode-level TPR at that empirical ID "
        "false-positive rate. `false-stop` is over ID-test episodes in the "
        "in_distribution row and *before the onset* (mid-onset episodes) in the family rows. "
        "`ep` = episode-level AUROC (per-episode max score), `dec` = decision-level AUROC.",
        "",
        "## Baselines",
        *[f"- **{k}**: {v}" for k, v in report["baselines_status"].items()],
        "",
        "## Mean episode AUROC over families (ranking)",
        *[
            f"{i + 1}. {k} ({DETECTOR_LABELS[k]}): "
            f"{report['mean_over_families']['episode_auroc'][k]:.3f}"
            for i, k in enumerate(report["mean_over_families"]["ranking"])
        ],
        "",
        *side_by_side_lines(report),
        *localisation_lines(report),
        *calibration_drift_lines(report),
        "## Dynamics vs appearance",
        report["dynamics_note"],
        "",
        "## Definitions",
        *[f"- `{k}`: {v}" for k, v in report["definitions"].items()],
        "",
        *_severity_section(report["severity_sweep"]),
    ]
    return "\n".join(lines)


SIDE_BY_SIDE_NAMES = {
    "monitor": "monitor (fused risk)",
    "fiper": "FIPER",
    "fiper_rnd_oe": "FIPER RND-OE only",
    "fiper_ace": "FIPER ACE only",
    "fail_detect": "FAIL-Detect",
}


def side_by_side_lines(report: Mapping[str, Any]) -> list[str]:
    """Monitor vs peers: mean AUROC and the gate's outcomes at both operating points."""
    sbs = report.get("side_by_side")
    if not sbs:
        return []
    mean = report["mean_over_families"]["episode_auroc"]
    lines = [
        "## The monitor and its peers, side by side",
        "Same episodes, thresholds from the same calibration split (definition "
        "`side_by_side`). Cells: ID false stops, mean TPR over families, failing shifted "
        "episodes stopped before the failure.",
        "",
        "| detector | mean ep AUROC | calibrated: ID false stop | TPR | stopped<fail | "
        "matched (0 ID false stops): TPR | stopped<fail |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in sbs.items():
        cal, mat = row["calibrated"], row["matched"]
        lines.append(
            f"| {SIDE_BY_SIDE_NAMES.get(key, key)} | {_f(mean.get(key))} | "
            f"{_short_rate(cal['id_false_stop'])} | {_f(cal['mean_tpr'])} | "
            f"{_short_rate(cal['shifted_failures_stopped'])} | {_f(mat['mean_tpr'])} | "
            f"{_short_rate(mat['shifted_failures_stopped'])} |"
        )
    families = list(next(iter(sbs.values()))["calibrated"]["families"])
    lines += [
        "",
        "Per family, episode AUROC / TPR at the calibrated threshold:",
        "",
        "| family | " + " | ".join(SIDE_BY_SIDE_NAMES.get(k, k) for k in sbs) + " |",
        "|---|" + "---|" * len(sbs),
    ]
    for fam in families:
        det = report["families"][fam]["detectors"]
        cells = [
            f"{_f(det[k]['episode']['auroc'])} / "
            f"{_f(sbs[k]['calibrated']['families'][fam]['tpr']['rate'])}"
            for k in sbs
        ]
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _severity_section(sweep: Mapping[str, Any]) -> list[str]:
    if not sweep["run"]:
        return [f"Severity sweep: {sweep['why']}.", ""]
    return [
        "## By severity",
        f"Episode AUROC of the risk (and episodes reaching STOP) with the first "
        f"{sweep['episodes_per_family']} shifted test episodes of each family re-simulated "
        "(same seeds and onsets) at each severity, against the same in-distribution episodes; "
        "the last column is the main table's row. Plot: severity.png.",
        "",
        *format_severity_markdown(sweep),
        "",
    ]


def plot_rocs(
    episodes: Sequence[EpisodeEval], detectors: Sequence[str], out_dir: Path
) -> list[str]:
    """Episode-level ROC curves of every detector: one figure per family and one pooled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ind = [e for e in episodes if not e.shifted]
    families = sorted({e.family for e in episodes if e.shifted})
    written = []
    for name, pos in [
        *[(f, [e for e in episodes if e.family == f]) for f in families],
        ("all", [e for e in episodes if e.shifted]),
    ]:
        fig, ax = plt.subplots(figsize=(5, 5))
        for k in detectors:
            neg = [e.max_score(k) for e in ind]
            ps = [e.max_score(k) for e in pos if e.labelled()]
            neg = [v for v in neg if not math.isnan(v)]
            ps = [v for v in ps if not math.isnan(v)]
            if not neg or not ps:
                continue
            curve = roc(np.r_[neg, ps], np.r_[np.zeros(len(neg)), np.ones(len(ps))])
            style = "-" if k == "monitor" else ("--" if k == "oracle" else ":")
            ax.plot(
                curve.fpr,
                curve.tpr,
                style,
                lw=2 if k == "monitor" else 1.2,
                label=f"{k} ({curve.auroc:.2f})",
            )
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax.set(
            xlabel="false-positive rate (ID episodes)",
            ylabel="true-positive rate",
            title=f"episode-level ROC: {name}",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        path = out_dir / f"roc_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written
