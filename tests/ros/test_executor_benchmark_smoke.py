"""Smoke test of ``benchmarks/ros_executor.py``: it runs on a live loopback graph and prints a
row of finite numbers for the shipped executor. No timing thresholds (speed lives in the
benchmark's own table, against the baseline of the same run)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ros_executor.py"


def test_the_executor_benchmark_prints_a_finite_row_for_the_shipped_executor() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "1", "--seconds", "1", "--kinds", "single"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| single |")]
    assert len(rows) == 1, out.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    numbers = [float(c) for c in cells[1:9]]
    assert all(math.isfinite(v) for v in numbers), cells
    assert numbers[0] > 0 and numbers[6] == 0  # the executor ran; every frame arrived


def test_it_refuses_nonsense_arguments_in_one_line() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--kinds", "events"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "--kinds from single,multi" in out.stderr
