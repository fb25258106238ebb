"""``evaluate-policy`` end to end on a tiny plan with the shipped bundle (one worker).

The run directory must follow the documented schema, every run must be paired, the detection
table must be ``evaluate``'s numbers on the same episodes, and the report must build from it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from world_monitor.config import load_config
from world_monitor.data.generate import sim_config_from
from world_monitor.defaults import default_bundle
from world_monitor.report.evaluate_policy import (
    PolicyEvalOptions,
    build_episode_plan,
    parse_policies,
    run_policy_evaluation,
)


def test_parse_policies() -> None:
    pols = parse_policies("scripted, scripted:0.3,bad")
    assert [p.label for p in pols] == [
        "scripted (noise 0.15)",
        "scripted (noise 0.3)",
        "bad (noise 0.15)",
    ]
    for bad in ("nope", "scripted:x", "scripted,scripted:0.15", "scripted:5", ""):
        with pytest.raises(ValueError):
            parse_policies(bad)


def test_plan_is_deterministic_and_validated() -> None:
    opts = PolicyEvalOptions(policies=parse_policies("scripted"), seeds=2)
    plan = build_episode_plan(opts, 50)
    assert len(plan) == 2 + 7 * 2 * 2  # ID + 7 families x {start, mid} x 2 seeds
    assert len({s.episode_id for s in plan}) == len(plan)
    assert plan == build_episode_plan(opts, 50)
    for kw in ({"scenarios": ["nope"]}, {"onsets": ("later",)}, {"mid_onset": 50}, {"seeds": 0}):
        with pytest.raises(ValueError):
            build_episode_plan(PolicyEvalOptions(**kw), 50)


def test_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    opts = PolicyEvalOptions(
        policies=parse_policies("scripted"),
        scenarios=["in_distribution", "lighting"],
        seeds=1,
        onsets=("mid",),
        workers=1,
        engines_dir=str(tmp_path / "eng"),
        strips_per_cell=1,
        progress=False,
        backend="onnxruntime",
    )
    gate_log = logging.getLogger("world_monitor.runtime.gate")
    before = gate_log.level
    doc = run_policy_evaluation(default_bundle(), out, sim_config_from(load_config([])), opts)
    assert gate_log.level == before  # quieted for the episodes only, not for the caller
    run = json.loads((out / "run.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert (
        run["episodes"] == 2
        and run["bundle_hash"]
        and summary == json.loads(json.dumps(doc["summary"]))
    )
    recs = [json.loads(p.read_text()) for p in sorted((out / "episodes").glob("*.json"))]
    assert len(recs) == 4 and {r["gated"] for r in recs} == {True, False}
    for r in recs:
        assert (out / r["mcap"]).is_file() and (out / r["strip"]).is_file()
        assert len(r["steps"]["gate"]) == r["length"] == 50
    light = {r["gated"]: r for r in recs if r["scenario"] == "lighting"}
    assert light[True]["outcome"] == "stopped" and light[False]["outcome"] != "stopped"
    rows = {r["scenario"]: r for r in summary["rows"]}
    assert rows["lighting"]["stopped_gated"]["k"] == 1
    evaluation = json.loads((out / "evaluate" / "evaluation.json").read_text())
    auroc = evaluation["families"]["lighting"]["detectors"]["monitor"]["episode"]["auroc"]
    assert summary["detection"]["families"]["lighting"]["episode_auroc"] == auroc

    from world_monitor.report.html import build_report

    index = build_report(out)
    assert index.is_file() and "lighting" in index.read_text(encoding="utf-8")


def _no_wall_clock(doc):
    if isinstance(doc, dict):
        return {k: _no_wall_clock(v) for k, v in doc.items() if "latency" not in k}
    if isinstance(doc, list):
        return [_no_wall_clock(v) for v in doc]
    return doc


def _records(out: Path) -> list[dict]:
    return [
        _no_wall_clock(json.loads(p.read_text())) for p in sorted((out / "episodes").glob("*.json"))
    ]


def test_episodes_on_a_local_ray_cluster_give_the_single_process_records(tmp_path: Path) -> None:
    def run(out: Path, **kw) -> dict:
        opts = PolicyEvalOptions(
            policies=parse_policies("scripted"),
            scenarios=["in_distribution", "lighting"],
            seeds=1,
            onsets=("mid",),
            engines_dir=str(tmp_path / "eng"),
            strips_per_cell=0,
            mcap=False,
            evaluate=False,
            progress=False,
            backend="onnxruntime",
            **kw,
        )
        return run_policy_evaluation(default_bundle(), out, sim_config_from(load_config([])), opts)

    one = run(tmp_path / "one", workers=1)
    ray = run(tmp_path / "ray", workers=2, ray="local")
    assert ray["run"]["ray"] == "local" and ray["run"]["workers"] == 2
    assert len(_records(tmp_path / "one")) == 4
    assert _records(tmp_path / "ray") == _records(tmp_path / "one")
    assert _no_wall_clock(ray["summary"]["rows"]) == _no_wall_clock(one["summary"]["rows"])
