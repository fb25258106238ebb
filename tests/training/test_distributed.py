"""Multi-process training: ``world-monitor train ... train.distributed=ddp train.processes=2``
(torchrun, gloo on loopback) follows the single-process run at the same global batch -- the
same dynamics loss at every logged step and the same weights in the bundle, to float rounding.

Why the tolerance is not zero: the two ranks' gradients are averaged in another order than one
process sums its batch; everything else (batches, ε, dropped context actions) is identical by
construction (training/distributed.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from world_monitor.cli import main
from world_monitor.training.common import TrainingError
from world_monitor.training.distributed import DistInfo


def _dynamics_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] == "dynamics" and "loss" in r]


@pytest.mark.parametrize("variant", ["deterministic", "diffusion"])
def test_ddp_on_two_processes_follows_the_single_process_run(
    tiny_dataset: Path, tiny_overrides: list[str], tmp_path: Path, variant: str
) -> None:
    common = ["train=tiny", f"model={variant}", *tiny_overrides[1:], "train.dynamics.steps=10"]
    flags = ["--data", str(tiny_dataset), "--no-progress"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *flags, "--out", str(one), *common]) == 0
    env_before = dict(os.environ)
    rc = main(
        ["train", *flags, "--out", str(two), *common, "train.distributed=ddp", "train.processes=2"]
    )
    assert dict(os.environ) == env_before
    assert rc == 0
    a, b = _dynamics_rows(one), _dynamics_rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) >= 2
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "mse", "probe", "label_rate"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), (ra["step"], key)
    wa = load_file(str(one / "bundle" / "weights.safetensors"))
    wb = load_file(str(two / "bundle" / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    worst = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    assert worst < 1e-4, worst
    # rank 0 alone wrote the run's files; the config says how it ran
    assert (two / "summary.json").is_file() and (two / "metrics.jsonl").is_file()
    assert "distributed: ddp" in (two / "config.yaml").read_text()


def test_ddp_needs_a_batch_the_ranks_can_split_evenly() -> None:
    info = DistInfo(rank=1, world=2, backend="gloo")
    assert info.rows(8) == slice(4, 8)
    with pytest.raises(TrainingError, match="not divisible"):
        info.rows(5)
