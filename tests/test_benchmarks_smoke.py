"""Smoke test of the benchmark scripts: they run end to end on a tiny bundle and print finite
numbers under their table headers.

Why: benchmarks are only run by hand, so nothing else notices when an API they use changes. No
timing thresholds here (DEVELOPERS rule: speed claims live in ``benchmarks/`` as ratios against a
baseline measured in the same run).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from bench_support import load_benchmark, table_rows
from tiny_world import TINY_OVERRIDES, make_tiny_dataset

from world_monitor.config import load_config
from world_monitor.runtime.calibrate import calibrate_bundle
from world_monitor.training.trainer import train

NUMBER = re.compile(r"-?\d+(?:\.\d+)?|nan|inf", re.IGNORECASE)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(dataset, calibrated tiny bundle, engines dir), trained once for the module."""
    base = tmp_path_factory.mktemp("bench")
    data = make_tiny_dataset(base / "ds", calib=24, test=6)
    cfg = load_config([*TINY_OVERRIDES, "train.dynamics.steps=20", "train.vae.steps=20"])
    result = train(cfg, base / "run", data_root=data, command="pytest bench", progress=False)
    bundle = base / "run" / "bundle"
    assert result.bundle is not None and bundle.is_dir()
    engines = base / "engines"
    calibrate_bundle(bundle, data, stride=2, progress=False, engines_dir=engines, stop_alpha=0.08)
    return data, bundle, engines


def _finite(cell: str) -> float:
    value = float(cell)
    assert math.isfinite(value), cell
    return value


def test_latency_benchmark(
    world: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle, engines = world
    latency = load_benchmark("latency")
    rc = latency.main(
        [
            "--bundle",
            str(bundle),
            "--data",
            str(data),
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--ref-repeats",
            "2",
            "--ece-windows",
            "4",
            "--engines-dir",
            str(engines),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    for header in ("# command:", "# host:", "# load average", "# bundle:", "# input:", "# target:"):
        assert header in out, header
    stages = table_rows(out, "| stage |")
    assert [r[0] for r in stages] == ["encode", "rollout", "signals", "risk", "total", "wall"]
    for row in stages:
        for cell in row[1:5]:
            assert _finite(cell) >= 0
    for row in table_rows(out, "| hardware |"):
        assert _finite(row[3]) > 0 and _finite(row[5]) > 0 and _finite(row[6]) > 0
    samplers = table_rows(out, "| sampler | p50")
    assert len(samplers) == 4 and all(_finite(r[4]) > 0 for r in samplers)
    ece = table_rows(out, "| sampler | n windows")
    assert len(ece) == 2
    for row in ece:
        assert int(row[1]) > 0 and 0 <= _finite(row[2]) <= 1


def test_replay_benchmark(
    world: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle, engines = world
    replay = load_benchmark("replay")
    rc = replay.main(
        [
            "--bundle",
            str(bundle),
            "--data",
            str(data),
            "--episodes",
            "1",
            "--backend",
            "onnxruntime",
            "--engines-dir",
            str(engines),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    for header in ("# command:", "# host:", "# load average", "# bundle:", "# target:"):
        assert header in out, header
    peak = {r[0]: r[1] for r in table_rows(out, "| how |")}
    assert _finite(peak["**peak**"]) > 0 and _finite(peak["one at a time"]) > 0
    rows = table_rows(out, "| mode |")
    assert [(r[0], r[1]) for r in rows] == [
        ("per chunk", "sequential"),
        ("per chunk", "look-ahead"),
        ("per frame", "sequential"),
        ("per frame", "look-ahead"),
    ]
    for row in rows:
        for cell in row[2:10]:
            assert _finite(cell) >= 0
        assert row[10] in ("reference", "yes")  # the look-ahead made the same decisions
    decisions = {r[0]: int(r[4]) for r in rows}
    assert decisions["per frame"] > decisions["per chunk"] > 0
    assert "# same decisions as the sequential replay: yes" in out


def test_recalibration_benchmark(
    world: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle, _ = world
    bench = load_benchmark("recalibration")
    argv = ["--bundle", str(bundle), "--data", str(data), "--calib-windows", "8"]
    rc = bench.main([*argv, "--test-windows", "4", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    for header in ("# command:", "# host:", "# load average", "# bundle:"):
        assert header in out, header
    rows = table_rows(out, "| map |")
    assert [r[0] for r in rows][0] == "raw probe (baseline)" and len(rows) == 4
    for row in rows:
        assert 0 <= _finite(row[1]) <= 1 and 0 <= _finite(row[2]) <= 1
    assert _finite(rows[0][4]) == pytest.approx(1.0)


def test_latency_benchmark_on_a_deterministic_bundle(
    world: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fast variant has no sampler: the decision tables print, the sampler comparison is
    reported as not applicable instead of crashing on an autoregressive override."""
    data, _, engines = world
    cfg = load_config(
        [*TINY_OVERRIDES, "model=deterministic", "train.dynamics.steps=10", "train.vae.steps=10"]
    )
    result = train(cfg, tmp_path / "run", data_root=data, command="pytest det", progress=False)
    bundle = tmp_path / "run" / "bundle"
    assert result.bundle is not None
    calibrate_bundle(
        bundle,
        data,
        stride=2,
        progress=False,
        engines_dir=engines,
        verify_split=None,
        stop_alpha=0.08,
    )
    latency = load_benchmark("latency")
    argv = ["--bundle", str(bundle), "--data", str(data), "--repeats", "2", "--warmup", "1"]
    rc = latency.main([*argv, "--engines-dir", str(engines)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "(deterministic," in out and "sampler comparison: not applicable" in out
    stages = table_rows(out, "| stage |")
    assert [r[0] for r in stages] == ["encode", "rollout", "signals", "risk", "total", "wall"]
    assert "# target: onnxruntime-CPU p50" in out


def test_colour_palette_benchmark(
    world: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, _ = world
    rc = load_benchmark("colour_palette").main(["--data", str(data), "--limit", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    for header in ("# command:", "# host:", "# palette:"):
        assert header in out, header
    rows = table_rows(out, "| score |")
    assert [r[0] for r in rows] == [
        "unseen pixels",
        "unseen pixels, palette dilated 1 bin",
        "smoothed density (shipped)",
    ]
    for row in rows:
        assert all(_finite(v) >= 0 for v in row[1].split(" / "))
        auroc, share = (_finite(v) for v in row[3].split(" / "))  # the lighting column
        assert 0 <= auroc <= 1 and 0 <= share <= 1


def test_replay_benchmark_without_a_dataset_generates_its_own(
    world: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fresh clone has no datasets/default: the benchmark makes the few seeded test episodes
    it needs at the bundle's image size (it crashed with a traceback, issue 17), and a --data
    the user named that does not exist is one line, exit 2."""
    _, bundle, engines = world
    monkeypatch.chdir(tmp_path)
    replay = load_benchmark("replay")
    argv = ["--bundle", str(bundle), "--episodes", "1", "--engines-dir", str(engines)]
    assert replay.main([*argv, "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "# data: datasets/default missing; generated" in out
    assert (tmp_path / "runs" / "bench_data" / "test6_shift1_seed0_16px" / "index.json").is_file()
    assert len(table_rows(out, "| mode |")) == 4
    with pytest.raises(SystemExit) as exit_info:
        replay.main([*argv, "--data", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "not a dataset" in capsys.readouterr().err


def test_camera_faults_benchmark(
    world: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, bundle, engines = world
    argv = ["--bundle", str(bundle), "--data", str(data), "--episodes", "4", "--areas", "0.06"]
    argv += ["--onset", "4", "--stride", "1", "--backend", "torch", "--engines-dir", str(engines)]
    rc = load_benchmark("camera_faults").main([*argv, "--out", str(tmp_path / "cf")])
    out = capsys.readouterr().out
    assert rc == 0
    for header in ("# command:", "# host:", "in-distribution (unfaulted) episodes stopped"):
        assert header in out, header
    rows = table_rows(out, "| fault |")
    assert [r[0] for r in rows] == ["smudge_6pct", "frozen"]
    for row in rows:
        assert row[1] == "4" and 0 <= _finite(row[2]) <= 1
        stops, n = row[5].split("/")
        assert int(n) == 4 and 0 <= int(stops) <= 4
    doc = json.loads((tmp_path / "cf" / "camera_faults.json").read_text())
    assert set(doc["faults"]) == {"smudge_6pct", "frozen"} and doc["peers"] is not None
    # the smudge's ground truth is its mask: the localisation is scored against it
    assert doc["faults"]["smudge_6pct"]["metrics"]["localisation"]["n_with_true_box"] >= 1


def test_fleet_benchmark(
    world: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/fleet.py on the tiny bundle: process pool and a local Ray cluster at 1 and 2
    workers; every run's merged summaries equal the single-process run's."""
    data, bundle, engines = world
    fleet = load_benchmark("fleet")
    argv = ["--bundle", str(bundle), "--data", str(data), "--episodes", "3"]
    assert fleet.main([*argv, "--engines-dir", str(engines), "--workers", "1,2"]) == 0
    out = capsys.readouterr().out
    for header in ("# command:", "# host:", "# load average", "# ray ", "# local Ray cluster"):
        assert header in out, header
    rows = table_rows(out, "| how |")
    assert [(r[0], r[1]) for r in rows] == [
        ("in this process (reference)", "1"),
        ("process pool", "1"),
        ("process pool", "2"),
        ("Ray (local cluster)", "1"),
        ("Ray (local cluster)", "2"),
    ]
    for row in rows:
        assert _finite(row[2]) > 0 and _finite(row[5]) >= 0
        assert row[8] in ("reference", "yes")
    assert "# merged results equal the single-process run: yes" in out


def test_train_ddp_benchmark(
    world: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/train_ddp.py on the tiny dataset and model: one process, then two torchrun
    processes (gloo on loopback), each row with finite windows/s and the ratio to the first."""
    data, _, _ = world
    bench = load_benchmark("train_ddp")
    argv = ["--data", str(data), "--steps", "4", "--batch", "4", "--processes", "1,2"]
    assert bench.main([*argv, *TINY_OVERRIDES]) == 0
    out = capsys.readouterr().out
    for header in ("# command:", "# host:", "# load average", "# torch "):
        assert header in out, header
    rows = table_rows(out, "| processes |")
    assert [r[0] for r in rows] == ["1", "2"]
    assert _finite(rows[0][3]) == 1.0
    for row in rows:
        assert _finite(row[2]) > 0 and _finite(row[6]) > 0
