"""`world-monitor evaluate`: metric plumbing on hand-made numbers, then end to end on a tiny world."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tiny_world import TINY_OVERRIDES, make_tiny_dataset

from world_monitor.cli import main
from world_monitor.config import load_config
from world_monitor.runtime.calibrate import calibrate_bundle
from world_monitor.runtime.evaluate import (
    DecisionScore,
    EpisodeEval,
    EvaluateOptions,
    compute_metrics,
    detection,
    evaluate_bundle,
    localisation,
    stop_before_failure,
)
from world_monitor.runtime.peers import PEER_DETECTORS
from world_monitor.runtime.risk import SIGNALS, WORLD_MODEL_SIGNALS, world_model_calibration
from world_monitor.runtime.severity import (
    SIMULATE_CONFIG,
    format_severity_markdown,
    parse_severities,
    sweep_specs,
)
from world_monitor.training.trainer import train
from world_monitor.uq.localization import box_from_mask


# ---------------------------------------------------------------------------- metric plumbing
def test_detection_known_answers() -> None:
    sep = detection([0.1, 0.2, 0.3], [0.7, 0.8, 0.9], fpr=0.05)
    assert sep["auroc"] == 1.0 and sep["tpr_at_fpr0.05"] == 1.0
    same = detection([0.5] * 4, [0.5] * 4)
    assert same["auroc"] == 0.5
    flipped = detection([0.7, 0.8], [0.1, 0.2])
    assert flipped["auroc"] == 0.0 and flipped["tpr_at_fpr0.05"] == 0.0
    # NaNs (undefined oracle at the last frame) are dropped, not counted
    assert detection([0.1, math.nan], [0.9])["n_neg"] == 1
    # an empty side gives no number rather than a made-up one
    assert detection([], [0.9])["auroc"] is None


def test_stop_before_failure_timeline() -> None:
    steps = [1, 5, 9, 13, 17]
    # first stop at t=9, failure at 17, 10 fps -> 0.8 s of warning
    ok, lead = stop_before_failure(steps, [0.1, 0.2, 0.99, 0.5, 0.99], 17, 0.9, 10.0)
    assert ok and lead == pytest.approx(0.8)
    # first stop at the failure step itself is too late
    assert stop_before_failure(steps, [0.1, 0.2, 0.3, 0.3, 0.99], 17, 0.9, 10.0) == (False, None)
    # never stops
    assert stop_before_failure(steps, [0.1] * 5, 17, 0.9, 10.0) == (False, None)


def _ep(
    eid: str,
    family: str,
    risks: list[float],
    *,
    onset: int | None = None,
    failure: int | None = None,
    boxes: list | None = None,
    true_boxes: list | None = None,
) -> EpisodeEval:
    ep = EpisodeEval(eid, family, onset, failure, length=20, fps=10.0)
    for i, r in enumerate(risks):
        t = 1 + 4 * i
        post = family != "in_distribution" and t >= (onset or 0)
        scores = {"monitor": r, "recon": r, "oracle": math.nan if i == len(risks) - 1 else r}
        box = boxes[i] if boxes else None
        tb = true_boxes[i] if true_boxes else None
        ep.decisions.append(DecisionScore(t, post, scores, box, tb))
    return ep


def test_localisation_iou_one_for_the_mask_box() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:8, 6:12] = True
    truth = box_from_mask(mask)
    assert truth == (6 / 16, 4 / 16, 12 / 16, 8 / 16)
    ep = _ep(
        "s",
        "lighting",
        [0.1, 0.95, 0.95],
        onset=5,
        boxes=[None, truth, truth],
        true_boxes=[None, truth, truth],
    )
    loc = localisation([ep], slow=0.9)
    assert loc["box_iou"] == 1.0 and loc["center_distance"] == 0.0
    assert loc["alert_iou_mean"] == 1.0
    # first alarm at t=5, true onset 5 -> time distance 0
    assert loc["time_distance_pct"] == 0.0 and loc["deeptrace"]["accuracy"] == 100.0


def test_compute_metrics_on_a_hand_made_world() -> None:
    stop, slow = 0.9, 0.5
    ind = [
        _ep("id0", "in_distribution", [0.1, 0.2, 0.3]),
        _ep("id1", "in_distribution", [0.2, 0.95, 0.1]),  # a false stop
        _ep("id2", "in_distribution", [0.1, 0.1, 0.1], failure=15),  # fails, never stopped
        _ep("id3", "in_distribution", [0.3, 0.2, 0.4]),
    ]
    shifted = [
        _ep("l0", "lighting", [0.96, 0.97, 0.98], onset=0, failure=13),  # stop at 1: 1.2 s lead
        _ep("l1", "lighting", [0.1, 0.6, 0.7], onset=5),  # slow only
        _ep("l2", "lighting", [0.95, 0.1, 0.99], onset=5, failure=9),  # stop before onset
    ]
    m = compute_metrics(ind + shifted, slow=slow, stop=stop, detectors=["monitor", "oracle"])
    fs = m["in_distribution"]["false_stop"]
    assert (fs["k"], fs["n"], fs["rate"]) == (1, 4, 0.25)
    assert fs["wilson95"][0] < 0.25 < fs["wilson95"][1]
    assert m["in_distribution"]["stopped_before_failure"]["k"] == 0
    fam = m["families"]["lighting"]
    # post-onset maxima 0.98, 0.7, 0.99 vs ID maxima 0.3, 0.95, 0.1, 0.4
    assert fam["tpr_at_stop"]["k"] == 2 and fam["tpr_at_slow"]["k"] == 3
    assert fam["false_stop_before_onset"]["k"] == 1 and fam["false_stop_before_onset"]["n"] == 2
    ep_auc = fam["detectors"]["monitor"]["episode"]["auroc"]
    assert ep_auc == pytest.approx(11 / 12)  # 0.7 loses to 0.95 only; 0.98, 0.99 beat all
    # both failing lighting episodes stopped before failing: leads 1.2 s and 0.8 s
    assert fam["stopped_before_failure"]["k"] == 2
    assert fam["median_lead_time_s"] == pytest.approx(1.0)
    # the oracle is undefined at each episode's last decision and those are dropped
    assert fam["detectors"]["oracle"]["decision"]["n_neg"] == 8
    assert m["mean_over_families"]["ranking"][0] in ("monitor", "oracle")


def test_compute_metrics_with_the_risk_alone() -> None:
    """The severity sweep scores only what it needs; the dynamics-vs-appearance note must not
    assume the recon detector is there (it once raised KeyError after a 7-minute evaluation)."""
    eps = [
        _ep("id0", "in_distribution", [0.1, 0.2]),
        _ep("l0", "lighting", [0.9, 0.95], onset=0),
        _ep("d0", "dynamics", [0.3, 0.99], onset=0),
    ]
    m = compute_metrics(eps, slow=0.5, stop=0.9, detectors=["monitor"])
    assert m["families"]["dynamics"]["detectors"]["monitor"]["episode"]["auroc"] == 1.0
    assert "dynamics episode AUROC" in m["dynamics_note"] and "recon n/a" in m["dynamics_note"]


# --------------------------------------------------------------------------- end to end (tiny)
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(dataset, calibrated bundle, engines dir), trained once for the module."""
    import torch

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("evaluate")
    data = make_tiny_dataset(base / "ds", calib=24, test=6)
    cfg = load_config([*TINY_OVERRIDES, "train.dynamics.steps=40", "train.vae.steps=60"])
    train(cfg, base / "run", data_root=data, command="pytest evaluate", progress=False)
    bundle = base / "run" / "bundle"
    engines = base / "engines"
    # 12 threshold episodes certify at best 1/13: 2% would be refused (CalibrationError)
    calibrate_bundle(
        bundle,
        data,
        stride=2,
        progress=False,
        engines_dir=engines,
        backend="torch",
        stop_alpha=0.08,
    )
    return data, bundle, engines


def test_evaluate_end_to_end(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, bundle, engines = world
    opts = EvaluateOptions(
        stride=1, backend="torch", engines_dir=engines, seeds=2, progress=False, command="test"
    )
    report = evaluate_bundle(bundle, data, tmp_path, opts)
    for name in ("evaluation.json", "evaluation.md", "roc_lighting.png", "roc_all.png"):
        assert (tmp_path / name).is_file(), name
    doc = json.loads((tmp_path / "evaluation.json").read_text())
    for key in (
        "command",
        "bundle_hash",
        "dataset",
        "thresholds",
        "in_distribution",
        "families",
        "mean_over_families",
        "localisation_goals",
        "dynamics_note",
        "baselines_status",
        "definitions",
        "episodes",
    ):
        assert key in doc, key
    fam = doc["families"]["lighting"]
    # the fused risk, each of its signals alone, and the baselines asked for
    assert set(fam["detectors"]) == {
        "monitor",
        "world_model",
        *SIGNALS,
        "sample_spread",
        "oracle",
        *PEER_DETECTORS,
    }
    # world_model fuses only the model's own signals, on the references calibrate stored
    info = json.loads((bundle / "calibration.json").read_text())
    stored = info["world_model_reference"]
    assert set(stored) == set(WORLD_MODEL_SIGNALS) and len(stored["c3_mean"]) > 10
    # on the episode scale, like the gate's risk: ranked against the scale episodes' maxima
    assert set(info["world_model_episode_reference"]) == set(WORLD_MODEL_SIGNALS)
    wm = world_model_calibration(info, 0.5)
    assert wm is not None and wm.config.scale == "episode"
    for ep in doc["episodes"][:3]:
        for d in ep["decisions"]:
            raw = {k: d[k] for k in WORLD_MODEL_SIGNALS if d.get(k) is not None}
            assert d["world_model"] == pytest.approx(wm.risk(raw))
    for key in (
        "tpr_at_stop",
        "tpr_at_slow",
        "false_stop_before_onset",
        "localisation",
        "stopped_before_failure",
        "median_lead_time_s",
    ):
        assert key in fam, key
    assert fam["episodes"] == 2 and fam["episodes_mid_onset"] == 1
    assert fam["detectors"]["recon"]["episode"]["auroc"] > 0.5  # the background brightens
    assert doc["in_distribution"]["episodes"] == 6
    assert doc["baselines_status"]["ensemble"].startswith("not run")
    assert "ensemble" not in report["detectors"]  # no fake numbers
    assert "not applicable" in doc["baselines_status"]["mc_dropout"]
    spread = [d["sample_spread"] for e in doc["episodes"] for d in e["decisions"]]
    assert all(s is not None and s >= 0 for s in spread)
    md = (tmp_path / "evaluation.md").read_text()
    assert "| lighting |" in md and "monitor AUROC ep/dec" in md
    # the peers: fitted on this dataset's train/calib splits, scored on the same decisions,
    # each compared as a gate with the monitor
    assert doc["peers"]["train_episodes"] == 8 and doc["peers"]["alpha"] == 0.08
    assert doc["baselines_status"]["fiper"].startswith("run:")
    assert set(doc["side_by_side"]) == {"monitor", *PEER_DETECTORS}
    for row in doc["side_by_side"].values():
        assert row["matched"]["id_false_stop"]["k"] == 0  # matched = 0 ID false stops
    peer_scores = [d["fail_detect"] for e in doc["episodes"] for d in e["decisions"]]
    assert all(v is not None and math.isfinite(v) for v in peer_scores)
    assert "## The monitor and its peers, side by side" in md and "| FAIL-Detect |" in md
    assert "## Localisation against the goals" in md and "| lighting | whole frame |" in md


def test_evaluate_cli_with_ensemble(
    world: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle, engines = world
    out = tmp_path / "eval"
    argv = ["evaluate", str(bundle), "--data", str(data), "--out", str(out), "--stride", "3"]
    argv += ["--backend", "torch", "--engines-dir", str(engines), "--no-progress"]
    argv += ["--baselines", "ensemble,recon", "--ensemble", str(bundle)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lighting" in printed and "evaluation.json" in printed
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["command"].startswith("world-monitor evaluate")
    assert doc["baselines_status"]["ensemble"].startswith("run")
    # the same bundle, inputs and seed: the ensemble agrees with itself exactly
    values = [d["ensemble"] for e in doc["episodes"] for d in e["decisions"]]
    assert values and all(v == pytest.approx(0.0, abs=1e-6) for v in values)
    assert doc["families"]["lighting"]["detectors"]["ensemble"]["episode"]["auroc"] == 0.5
    assert doc["baselines_status"]["sample_spread"].startswith("not run")
    # the tiny dataset was not made by `simulate`: no sweep by default, and the report says why
    assert not doc["severity_sweep"]["run"] and SIMULATE_CONFIG in doc["severity_sweep"]["why"]
    # ... and asking for one anyway is a clear error, not a silent skip
    argv += ["--out", str(tmp_path / "eval2"), "--severities", "0.5"]
    assert main(argv) == 2
    assert SIMULATE_CONFIG in capsys.readouterr().err


# ------------------------------------------------------------------------------ severity sweep
def test_parse_severities() -> None:
    assert parse_severities("1,0.25,0.5") == (0.25, 0.5, 1.0)
    assert parse_severities("none") == ()
    for bad in ("0", "1.5", "nan", "a", "0.5,0.5"):
        with pytest.raises(ValueError, match="--severities"):
            parse_severities(bad)


def test_sweep_specs_pair_each_episode_with_its_original() -> None:
    recs = [
        {
            "id": "test-lighting-start-00000",
            "scenario": "lighting",
            "shift": "lighting",
            "seed": 7,
            "onset": None,
        },
        {
            "id": "test-dynamics-mid-00030",
            "scenario": "dynamics",
            "shift": "dynamics",
            "seed": 9,
            "onset": 14,
        },
    ]
    specs = sweep_specs(recs, (0.25, 1.0))
    assert [s.episode_id for s in specs] == [
        "test-lighting-start-00000-sev0.25",
        "test-dynamics-mid-00030-sev0.25",
        "test-lighting-start-00000-sev1",
        "test-dynamics-mid-00030-sev1",
    ]
    assert [(s.scenario, s.seed, s.onset, s.severity) for s in specs[:2]] == [
        ("lighting", 7, None, 0.25),
        ("dynamics", 9, 14, 0.25),
    ]
    with pytest.raises(ValueError, match="no severity"):
        sweep_specs([{"id": "test-id-0", "scenario": "in_distribution", "shift": None}], (0.5,))


def test_severity_table_cells() -> None:
    cell = {"auroc": 0.875, "tpr_at_stop": {"k": 3, "n": 4}}
    sweep = {
        "severities": [0.25, 1.0],
        "families": {"lighting": {"0.25": cell, "1": None, "default": {**cell, "severity": 0.6}}},
    }
    lines = format_severity_markdown(sweep)
    assert lines[0] == "| family | severity 0.25 | severity 1 | default severity |"
    assert lines[2] == "| lighting | 0.88 (STOP 3/4) | — | 0.88 (STOP 3/4) @ 0.6 |"


def test_a_sweep_on_a_dataset_that_cannot_be_resimulated_fails_before_scoring(
    world: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import world_monitor.runtime.evaluate as evaluate_module

    def no_scoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("scored episodes before finding the sweep impossible")

    monkeypatch.setattr(evaluate_module, "_score_episode", no_scoring)
    data, bundle, engines = world
    opts = EvaluateOptions(backend="torch", engines_dir=engines, progress=False, severities=(0.5,))
    with pytest.raises(ValueError, match=SIMULATE_CONFIG):
        evaluate_bundle(bundle, data, tmp_path / "eval", opts)


def test_severity_sweep_end_to_end(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The shifted test episodes are re-simulated (same seed and onset, new severity), scored
    by the same monitor against the same in-distribution episodes, tabulated and plotted."""
    import shutil

    from omegaconf import OmegaConf

    from world_monitor.data import EpisodeDataset

    data, bundle, engines = world
    sim_data = tmp_path / "data"
    shutil.copytree(data, sim_data)
    sim = {
        "image_size": 16,
        "episode_length": 10,
        "fps": 10.0,
        "chunk_horizon": 8,
        "replan_every": 4,
        "policy": "scripted",
        "policy_noise": None,
    }
    OmegaConf.save(OmegaConf.create({"sim": sim}), sim_data / SIMULATE_CONFIG)
    opts = EvaluateOptions(
        stride=1,
        backend="torch",
        engines_dir=engines,
        baselines=("recon",),
        progress=False,
        severities=(0.3, 1.0),
        severity_episodes=2,
    )
    report = evaluate_bundle(bundle, sim_data, tmp_path / "eval", opts)
    sweep = report["severity_sweep"]
    assert sweep["run"] and sweep["severities"] == [0.3, 1.0]
    row = sweep["families"]["lighting"]
    assert set(row) == {"0.3", "1", "default"}
    assert row["default"]["severity"] == 0.5 and row["default"]["episodes"] == 2
    assert row["1"]["episodes"] == 2 and row["1"]["auroc"] is not None
    assert row["1"]["tpr_at_stop"]["n"] == 2
    swept = EpisodeDataset(tmp_path / "eval" / "severity_data")
    originals = {r.id: r for r in EpisodeDataset(data).index}
    assert len(swept) == 4
    for rec in swept.index:
        orig = originals[rec.id.rsplit("-sev", 1)[0]]
        assert (rec.seed, rec.onset, rec.scenario) == (orig.seed, orig.onset, orig.scenario)
        assert rec.severity == float(rec.id.rsplit("-sev", 1)[1])
    md = (tmp_path / "eval" / "evaluation.md").read_text()
    assert "## By severity" in md and "| lighting |" in md
    assert (tmp_path / "eval" / "severity.png").is_file()


def test_localisation_is_scored_against_the_goals_by_kind_of_shift() -> None:
    from world_monitor.runtime.evaluate import localisation_goals, localisation_lines

    fams = {
        "distractor": {
            "localisation": {"box_iou": 0.62, "center_distance": 0.05, "time_distance_pct": 4.0}
        },
        "unseen_object": {
            "localisation": {"box_iou": 0.29, "center_distance": 0.2, "time_distance_pct": 36.0}
        },
        "lighting": {
            "localisation": {"box_iou": 0.22, "center_distance": 0.14, "time_distance_pct": 3.3}
        },
        "dynamics": {
            "localisation": {"box_iou": None, "center_distance": None, "time_distance_pct": 47.0}
        },
    }
    goals = localisation_goals(fams)
    assert goals["distractor"]["kind"] == "local" and goals["distractor"]["iou_goal_met"] is True
    assert goals["unseen_object"]["iou_goal_met"] is False
    assert goals["unseen_object"]["onset_goal_met"] is False
    # a whole-frame shift has no IoU goal (its truth box is the frame), only the onset one
    assert goals["lighting"]["kind"] == "whole frame" and goals["lighting"]["iou_goal_met"] is None
    assert goals["lighting"]["onset_goal_met"] is True
    assert goals["dynamics"]["kind"] == "not visible"
    md = "\n".join(localisation_lines({"localisation_goals": goals}))
    assert "| unseen_object | local | 0.29 | 0.20 | 36.0 | **not met** | **not met** |" in md


def test_calibration_drift_is_counted_per_family_before_and_after_the_onset() -> None:
    from world_monitor.runtime.evaluate import calibration_drift_counts, calibration_drift_lines

    def ep(eid: str, family: str, checks: list[float], onset: int | None = None) -> EpisodeEval:
        e = EpisodeEval(eid, family, onset, None, length=20, fps=10.0)
        for i, v in enumerate(checks):
            t = 1 + 4 * i
            post = family != "in_distribution" and t >= (onset or 0)
            e.decisions.append(DecisionScore(t, post, {"selfcheck": v}))
        return e

    info = {"world_model_reference": {"selfcheck": [0.1 * i for i in range(11)]}}  # max 1.0
    eps = [
        ep("i0", "in_distribution", [math.nan, 0.5, 0.9]),
        ep("i1", "in_distribution", [math.nan, 1.2, 0.3]),  # drifts in distribution
        ep("l0", "lighting", [0.2, 0.4, 1.5], onset=5),  # after the onset only
        ep("l1", "lighting", [1.1, 0.2, 0.2], onset=9),  # before the onset only
    ]
    drift = calibration_drift_counts(eps, info)
    assert drift is not None and drift["bound"] == pytest.approx(1.0)
    assert list(drift["families"]) == ["in_distribution", "lighting"]
    assert drift["families"]["in_distribution"] == {
        "episodes": 2,
        "before_onset": 1,
        "after_onset": 0,
    }
    assert drift["families"]["lighting"] == {"episodes": 2, "before_onset": 1, "after_onset": 1}
    lines = calibration_drift_lines({"calibration_drift": drift})
    assert lines[0].startswith("WARN calibration_drift: 1 of 2 in-distribution episodes")
    assert calibration_drift_counts(eps, {}) is None  # a calibration without the reference
