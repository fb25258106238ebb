"""Trainer mechanics: checkpoints round-trip without pickle, and resume == uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from world_monitor.config import load_config
from world_monitor.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from world_monitor.training.common import lr_at
from world_monitor.training.trainer import train


def test_checkpoint_roundtrip_restores_model_and_adam(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        opt.step()
    save_checkpoint(tmp_path, 3, {"m": model}, {"m": opt}, stage="test", extra={"note": 1})
    clone = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1.0)
    ck = load_checkpoint(latest_checkpoint(tmp_path), {"m": clone}, {"m": opt2})
    assert (ck.step, ck.stage, ck.extra) == (3, "test", {"note": 1})
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for i, st in s1["state"].items():
        for key, val in st.items():
            assert torch.equal(val, s2["state"][i][key]), key
    # only safetensors + JSON on disk
    assert sorted(p.name for p in ck.path.iterdir()) == ["state.json", "tensors.safetensors"]


def test_checkpoints_keep_only_newest(tmp_path: Path) -> None:
    m = torch.nn.Linear(2, 2)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"m": m}, {}, stage="s", keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002", "step_00000003"]


def test_lr_schedule_warmup_then_cosine() -> None:
    assert lr_at(0, base=1.0, warmup=4, total=20) == 0.25
    assert lr_at(3, base=1.0, warmup=4, total=20) == 1.0
    assert abs(lr_at(20, base=1.0, warmup=4, total=20) - 0.1) < 1e-9


def test_resume_continues_and_matches_uninterrupted(
    tiny_dataset: Path, tiny_overrides: list[str], tmp_path: Path
) -> None:
    overrides = [
        *tiny_overrides,
        "train.vae.steps=4",
        "train.dynamics.steps=6",
        "train.dynamics.ckpt_every=3",
        "train.dynamics.val_every=100",
    ]
    cfg = load_config(overrides)
    full = train(cfg, tmp_path / "full", data_root=tiny_dataset, progress=False)
    part = train(cfg, tmp_path / "part", data_root=tiny_dataset, progress=False, stop_dynamics_at=3)
    assert part.bundle is None
    assert latest_checkpoint(tmp_path / "part" / "dynamics" / "ckpt").name == "step_00000003"
    resumed = train(cfg, tmp_path / "part", data_root=tiny_dataset, progress=False)
    assert resumed.metrics["dynamics"]["start_step"] == 3
    assert resumed.metrics["dynamics"]["end_step"] == 6
    a = load_file(str(full.bundle / "weights.safetensors"))
    b = load_file(str(resumed.bundle / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
