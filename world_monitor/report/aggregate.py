"""Per policy × scenario aggregates of closed-loop runs, with intervals, and the acceptance checks.

Every rate is paired: the gated and the open (shadow-mode) run of an episode share the policy,
scenario, seed and onset, so "failures prevented" and "false stops" compare the same episode
with and without the gate. Rates carry Wilson 95% intervals (small n, rates near 0 or 1), means
(lead time, interventions per minute) a seeded percentile bootstrap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from world_monitor.report.closed_loop import lead_time_s
from world_monitor.runtime.types import json_float
from world_monitor.sim.scenarios import IN_DISTRIBUTION as ID_SCENARIO
from world_monitor.uq.detection import bootstrap_ci, wilson_interval

__all__ = [
    "ID_SCENARIO",
    "MAX_ID_SUCCESS_DROP",
    "acceptance_checks",
    "format_rate",
    "pair_runs",
    "rate",
    "summarise_runs",
]

#: Acceptance: in-distribution success may drop by at most this much with the gate in the loop.
MAX_ID_SUCCESS_DROP = 0.02


def rate(k: int, n: int) -> dict[str, Any]:
    """``{"rate", "lo", "hi", "k", "n"}`` with a Wilson 95% interval (all None when n = 0)."""
    if n == 0:
        return {"rate": None, "lo": None, "hi": None, "k": 0, "n": 0}
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n, "lo": lo, "hi": hi, "k": int(k), "n": int(n)}


def _mean_ci(values: Sequence[float], seed: int = 0) -> dict[str, Any]:
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    if len(vals) == 1:
        return {"mean": vals[0], "lo": None, "hi": None, "n": 1}
    mean, lo, hi = bootstrap_ci(lambda v: float(np.mean(v)), np.asarray(vals), seed=seed)
    return {"mean": mean, "lo": json_float(lo), "hi": json_float(hi), "n": len(vals)}


def pair_runs(records: Iterable[Mapping[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(open, gated) pairs by ``episode_id``; a record without its partner is an error (the
    comparison would silently change population otherwise)."""
    by_ep: dict[str, dict[bool, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        by_ep[str(r["episode_id"])][bool(r["gated"])] = dict(r)
    missing = sorted(k for k, v in by_ep.items() if len(v) != 2)
    if missing:
        raise ValueError(f"runs without their gated/open partner: {missing[:5]}")
    return [(v[False], v[True]) for _, v in sorted(by_ep.items())]


def _cell(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    n = len(pairs)
    open_ok = [o["outcome"] == "success" for o, _ in pairs]
    gated_ok = [g["outcome"] == "success" for _, g in pairs]
    open_fail = [o["outcome"] == "failure" for o, _ in pairs]
    gated_fail = [g["outcome"] == "failure" for _, g in pairs]
    prevented = [of and not gf for of, gf in zip(open_fail, gated_fail, strict=True)]
    false_stop = [
        ok and g["outcome"] == "stopped" for ok, (_, g) in zip(open_ok, pairs, strict=True)
    ]
    leads = [lt for o, g in pairs if (lt := lead_time_s(o, g)) is not None]
    minutes = [g["length"] / g["fps"] / 60.0 for _, g in pairs]
    per_min = [g["interventions"] / m for (_, g), m in zip(pairs, minutes, strict=True)]
    lat = [d["latency_ms"] for _, g in pairs for d in g["decisions"] if d["latency_ms"] is not None]
    # shift-induced failures: the same policy and seed succeeded without the shift (its
    # in-distribution twin shares the layout), so the failure is the shift's doing
    twins = [(o, g) for o, g in pairs if o.get("twin_success") is True]
    return {
        "n": n,
        "success_ungated": rate(sum(open_ok), n),
        "success_gated": rate(sum(gated_ok), n),
        "failure_ungated": rate(sum(open_fail), n),
        "failure_gated": rate(sum(gated_fail), n),
        "stopped_gated": rate(sum(g["outcome"] == "stopped" for _, g in pairs), n),
        "failures_prevented": rate(sum(prevented), sum(open_fail)),
        "induced_failure_ungated": rate(
            sum(o["outcome"] == "failure" for o, _ in twins), len(twins)
        ),
        "induced_failure_gated": rate(sum(g["outcome"] == "failure" for _, g in twins), len(twins)),
        "with_twin": sum(o.get("twin_success") is not None for o, _ in pairs),
        "false_stops": rate(sum(false_stop), sum(open_ok)),
        "lead_time_s": _mean_ci(leads),
        "interventions_per_min": _mean_ci(per_min),
        "latency_ms": {
            "p50": json_float(float(np.percentile(lat, 50))) if lat else None,
            "p95": json_float(float(np.percentile(lat, 95))) if lat else None,
            "n": len(lat),
        },
    }


def summarise_runs(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (policy, scenario) in first-seen order, plus an "all shifts" row per policy."""
    pairs = pair_runs(records)
    twin = {
        (o["policy"], o["seed"]): o["outcome"] == "success"
        for o, _ in pairs
        if o["scenario"] == ID_SCENARIO
    }
    for o, _ in pairs:
        if o["scenario"] != ID_SCENARIO:
            o["twin_success"] = twin.get((o["policy"], o["seed"]))
    cells: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for o, g in pairs:
        cells.setdefault((o["policy"], o["scenario"]), []).append((o, g))
    policies = list(dict.fromkeys(p for p, _ in cells))
    order = {s: i for i, s in enumerate(dict.fromkeys(s for _, s in cells))}
    rows = []
    for pol in policies:
        scen = sorted((s for p, s in cells if p == pol), key=lambda s: (s != ID_SCENARIO, order[s]))
        for s in scen:
            rows.append({"policy": pol, "scenario": s, **_cell(cells[(pol, s)])})
        shifted = [pr for s in scen if s != ID_SCENARIO for pr in cells[(pol, s)]]
        if shifted:
            rows.append({"policy": pol, "scenario": "all shifts", **_cell(shifted)})
    return rows


def acceptance_checks(rows: Sequence[Mapping[str, Any]], policy: str) -> list[dict[str, Any]]:
    """The issue's acceptance criteria for ``policy`` (the nominal policy), each with its data.

    * on every shift family that causes failures (episodes that fail under the shift although
      their in-distribution twin — same policy and seed, same layout — succeeds), the gated
      rate of such failures is lower than the open one;
    * the in-distribution success rate drops by at most :data:`MAX_ID_SUCCESS_DROP`.
    """
    out = []
    mine = [r for r in rows if r["policy"] == policy and r["scenario"] != "all shifts"]
    for r in mine:
        if r["scenario"] == ID_SCENARIO:
            continue
        fo, fg = r["induced_failure_ungated"], r["induced_failure_gated"]
        what = "shift-induced failures (in-distribution twin succeeded)"
        if not r["with_twin"]:  # no in-distribution twins in this run: all failures
            fo, fg, what = r["failure_ungated"], r["failure_gated"], "failures"
        if not fo["k"]:
            continue  # this family causes no failures here
        out.append(
            {
                "check": f"{r['scenario']}: fewer failures with the gate",
                "passed": fg["rate"] < fo["rate"],
                "detail": f"{what} {format_rate(fo)} without vs {format_rate(fg)} with the gate",
            }
        )
    for r in mine:
        if r["scenario"] != ID_SCENARIO:
            continue
        so, sg = r["success_ungated"], r["success_gated"]
        if so["rate"] is None:
            continue
        drop = so["rate"] - sg["rate"]
        out.append(
            {
                "check": f"in-distribution success drops by <= {MAX_ID_SUCCESS_DROP * 100:.0f} points",
                "passed": drop <= MAX_ID_SUCCESS_DROP + 1e-12,
                "detail": f"success {format_rate(so)} without vs {format_rate(sg)} with the gate "
                f"(drop {drop * 100:.1f} points)",
            }
        )
    return out


def format_rate(r: Mapping[str, Any] | None) -> str:
    """``rate [lo, hi] (k/n)`` of a :func:`rate` dict; "—" where the rate is undefined."""
    if not r or r["rate"] is None:
        return "—"
    return f"{r['rate']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}] ({r['k']}/{r['n']})"
