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

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "adversarial.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_adversarial", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _rows(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    out = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_adversarial_benchmark_classifies_two_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load()
    argv = ["--n", "2", "--classes", "absurd_actions,truncated_bag", "--out", str(tmp_path)]
    rc = bench.main([*argv, "--timeout-s", "180", "--no-progress"])
    out = capsys.readouterr().out
    for header in ("# command:", "# host:", "# load average", "# baseline (clean bag):"):
        assert header in out, header
    rows = _rows(out, "| class | cases |")
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
