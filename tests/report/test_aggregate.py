"""Paired aggregation of closed-loop runs and the acceptance checks, on hand-made records."""

from __future__ import annotations

from typing import Any

import pytest

from world_monitor.report.aggregate import acceptance_checks, pair_runs, rate, summarise_runs

POLICY = "scripted (noise 0.15)"


def _rec(scenario: str, seed: int, gated: bool, outcome: str, **kw: Any) -> dict[str, Any]:
    ep = f"{scenario}-{seed}"
    rec = {
        "id": f"{ep}-{gated}",
        "episode_id": ep,
        "policy": kw.pop("policy", POLICY),
        "scenario": scenario,
        "seed": seed,
        "gated": gated,
        "outcome": outcome,
        "failure_step": kw.pop("failure_step", 30 if outcome == "failure" else None),
        "first_stop_step": kw.pop("first_stop_step", None),
        "interventions": kw.pop("interventions", 0),
        "fps": 10.0,
        "length": 50,
        "decisions": [{"latency_ms": 80.0}, {"latency_ms": 100.0}],
    }
    rec.update(kw)
    return rec


def _pair(scenario: str, seed: int, open_out: str, gated_out: str, **gkw: Any) -> list[dict]:
    return [_rec(scenario, seed, False, open_out), _rec(scenario, seed, True, gated_out, **gkw)]


def test_rate_has_wilson_interval() -> None:
    r = rate(3, 10)
    assert r["rate"] == 0.3 and 0.1 < r["lo"] < 0.3 < r["hi"] < 0.61
    assert rate(0, 0)["rate"] is None


def test_pairs_must_be_complete() -> None:
    with pytest.raises(ValueError, match="partner"):
        pair_runs([_rec("lighting", 1, True, "success")])


def test_prevented_false_stops_and_lead_time() -> None:
    recs = []
    recs += _pair("in_distribution", 1, "success", "success")
    recs += _pair("in_distribution", 2, "success", "stopped", first_stop_step=8, interventions=1)
    recs += _pair("in_distribution", 3, "failure", "failure")
    # unseen object: seed 1 and 2 fail because of the box (twins succeed); seed 3's twin failed
    recs += _pair("unseen_object", 1, "failure", "stopped", first_stop_step=10, interventions=1)
    recs += _pair("unseen_object", 2, "failure", "failure")
    recs += _pair("unseen_object", 3, "failure", "failure")
    rows = {r["scenario"]: r for r in summarise_runs(recs)}
    idr, un = rows["in_distribution"], rows["unseen_object"]
    assert idr["success_ungated"]["k"] == 2 and idr["success_gated"]["k"] == 1
    assert idr["false_stops"]["k"] == 1 and idr["false_stops"]["n"] == 2
    assert un["failures_prevented"]["k"] == 1 and un["failures_prevented"]["n"] == 3
    assert un["lead_time_s"]["mean"] == pytest.approx((30 - 10) / 10.0)
    assert un["induced_failure_ungated"]["k"] == 2 and un["induced_failure_ungated"]["n"] == 2
    assert un["induced_failure_gated"]["k"] == 1
    assert un["interventions_per_min"]["mean"] == pytest.approx(1 / 3 * 60 / 5)
    assert rows["all shifts"]["n"] == 3
    checks = {c["check"]: c for c in acceptance_checks(list(rows.values()), POLICY)}
    assert checks["unseen_object: fewer failures with the gate"]["passed"]
    drop = next(c for k, c in checks.items() if k.startswith("in-distribution"))
    assert not drop["passed"]  # 2/3 -> 1/3 is a 33-point drop


def test_families_without_induced_failures_are_not_checked() -> None:
    recs = []
    recs += _pair("in_distribution", 1, "failure", "failure")
    recs += _pair("lighting", 1, "failure", "stopped", first_stop_step=20)  # the twin failed too
    checks = acceptance_checks(summarise_runs(recs), POLICY)
    assert not any(c["check"].startswith("lighting") for c in checks)
