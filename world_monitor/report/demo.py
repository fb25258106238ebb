"""``world-monitor demo``: the whole product on the shipped bundle in a few minutes, no ROS/GPU.

Simulates in-distribution and shifted episodes, runs the monitor closed loop (gate on and off),
runs ``evaluate`` on the same episodes, prints one summary table and writes the HTML report.
It is ``evaluate-policy`` with small defaults, so its numbers are that command's numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from world_monitor.report.aggregate import format_rate
from world_monitor.runtime.risk import format_risk

__all__ = ["DEMO_POLICIES", "DEMO_SEEDS", "print_summary"]

#: The nominal policy and the deliberately bad one (the noisy variant is left to evaluate-policy
#: to keep the demo within its time budget on two cores).
DEMO_POLICIES = "scripted,bad"
DEMO_SEEDS = 4
#: Detection columns printed per family (from evaluate's evaluation.json).
DETECTION_KEYS = ("episode_auroc", "decision_auroc", "recon_episode_auroc", "tpr_at_stop")


def print_summary(doc: Mapping[str, Any], report_path: Any = None) -> None:
    """Print the run's summary: closed-loop table, detection (from ``evaluate``), acceptance."""
    from rich.console import Console
    from rich.table import Table

    from world_monitor.report.evaluate_policy import detection_note

    console = Console(width=200)
    run, summary = doc["run"], doc["summary"]
    table = Table(title="closed loop: the same episodes with the gate off (open) and on (gated)")
    for col in (
        "policy",
        "scenario",
        "n",
        "success open",
        "success gated",
        "failure open",
        "failure gated",
        "failures prevented",
        "false stops",
        "lead s",
        "interv./min",
        "p50 ms",
    ):
        table.add_column(col, overflow="fold")
    for row in summary["rows"]:
        lead = row["lead_time_s"]["mean"]
        ipm = row["interventions_per_min"]["mean"]
        p50 = row["latency_ms"]["p50"]
        table.add_row(
            row["policy"],
            row["scenario"],
            str(row["n"]),
            format_rate(row["success_ungated"]),
            format_rate(row["success_gated"]),
            format_rate(row["failure_ungated"]),
            format_rate(row["failure_gated"]),
            format_rate(row["failures_prevented"]),
            format_rate(row["false_stops"]),
            "—" if lead is None else f"{lead:.1f}",
            "—" if ipm is None else f"{ipm:.1f}",
            "—" if p50 is None else f"{p50:.0f}",
        )
    console.print(table)
    det = summary.get("detection")
    if det:
        dt = Table(title=f"detection ({det['source']}, policy {summary['nominal_policy']})")
        for col in ("family", "monitor episode AUROC", "decision AUROC", "recon AUROC", "TPR@STOP"):
            dt.add_column(col)
        for fam, v in det["families"].items():
            dt.add_row(fam, *(_num(v.get(k)) for k in DETECTION_KEYS))
        dt.add_row("mean over families", _num(det.get("mean_episode_auroc")), "", "", "")
        console.print(dt)
        console.print(detection_note(det))
    for check in summary.get("acceptance", []):
        mark = "PASS" if check["passed"] else "FAIL"
        console.print(f"[{mark}] {check['check']}: {check['detail']}")
    console.print(
        f"{run['episodes']} episodes x 2 runs in {run['seconds']:.0f} s on {run['workers']} "
        f"process(es), backend {run['backend']}; thresholds SLOW > "
        f"{format_risk(run['slow_threshold'])}, STOP > {format_risk(run['stop_threshold'])}"
    )
    if report_path is not None:
        console.print(f"report: {report_path}")


def _num(v: Any) -> str:
    return "—" if v is None else f"{float(v):.2f}"
