"""Smoke test of ``benchmarks/soak.py`` at a tiny duration (the real soak is >= 10 minutes).

Why (as ``test_benchmarks_smoke.py``): benchmarks run by hand only, so an API change that breaks
one goes unnoticed; this runs the soak end to end on the shipped bundle for a few seconds and
checks its table holds finite numbers. No thresholds on memory here: a few seconds of a process
that is still warming up says nothing about a leak.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench_support import load_benchmark, table_rows


def test_soak_runs_and_prints_its_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    soak = load_benchmark("soak")
    argv = [
        "--minutes",
        "0.05",
        "--backend",
        "torch",
        "--engines-dir",
        str(tmp_path),
        "--episodes",
        "1",
    ]
    assert soak.main([*argv, "--sample-every", "2"]) == 0
    out = capsys.readouterr().out
    for header in ("# command:", "# host:", "# load average", "# bundle:", "# target:"):
        assert header in out, header
    (row,) = table_rows(out, "| host |")
    decisions = int(row[4])
    assert decisions > 0 and float(row[5]) > 0
    for cell in (row[6], row[7], row[8]):
        assert math.isfinite(float(cell)), cell
    assert int(row[9]) > 0 and int(row[10]) > 0
    refusals = dict(r[:2] for r in table_rows(out, "| refusal |"))
    assert refusals["accounting problems"] == "0"


def test_rss_slope_is_mb_per_1000_decisions() -> None:
    soak = load_benchmark("soak")
    assert soak.rss_slope([0, 1000, 2000], [100.0, 100.5, 101.0]) == pytest.approx(0.5)
    assert math.isnan(soak.rss_slope([5], [1.0]))
