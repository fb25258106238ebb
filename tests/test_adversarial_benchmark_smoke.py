"""Smoke test of ``benchmarks/adversarial.py`` with one case of two cheap classes.

Why (as ``test_benchmarks_smoke.py``): benchmarks run by hand only, so an API change that breaks
one goes unnoticed. This runs the script end to end (simulate + export one episode, the clean
baseline replay, then ``inspect --strict`` and ``replay`` as subprocesses on two crafted bags)
and checks that the table is printed and each case is classified from the product's output: an
absurd action chunk is a counted rejection (the gate stays closed), a truncated bag a clean
error. The real run is N >= 200 (see the script's docstring); no timing thresholds here, so the
wall-clock bound is generous.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_support import load_benchmark, table_rows


def test_adversarial_benchmark_classifies_two_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_benchmark("adversarial")
    argv = ["--n", "2", "--classes", "absurd_actions,truncated_bag", "--out", str(tmp_path)]
    rc = bench.main([*argv, "--timeout-s", "180", "--no-progress"])
    out = capsys.readouterr().out
    for header in ("# command:", "# host:", "# load average", "# baseline (clean bag):"):
        assert header in out, header
    rows = table_rows(out, "| class | cases |")
    assert [r[0] for r in rows] == ["absurd_actions", "truncated_bag", "**total**"]
    cols = ["cases", "clean error", "counted rejection", "benign", "fail-open", "hang", "traceback"]
    by_col = {r[0]: dict(zip(cols, (int(c) for c in r[1:8]), strict=True)) for r in rows}
    assert by_col["absurd_actions"]["counted rejection"] == 1, out
    assert by_col["truncated_bag"]["clean error"] == 1, out
    assert by_col["**total**"]["cases"] == 2
    assert sum(by_col["**total**"][c] for c in ("fail-open", "hang", "traceback")) == 0, out
    for row in rows:
        assert float(row[9]) > 0 and float(row[10]) >= float(row[9])  # p50 / max wall seconds
    records = [json.loads(line) for line in (tmp_path / "cases.jsonl").read_text().splitlines()]
    assert {r["class"]: r["outcome"] for r in records} == {
        "absurd_actions": "counted_rejection",
        "truncated_bag": "clean_error",
    }
    absurd = next(r for r in records if r["class"] == "absurd_actions")
    assert "action_out_of_range" in absurd["replay"]["kinds"]
    assert absurd["bad"] and absurd["baseline_open_in_window"] is True
    assert "target 0 at N >= 200: n/a" in out
    assert rc == 0
