"""Tiny end-to-end run: train (train=tiny, smallest model) -> bundle -> load -> evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from world_monitor.config import load_config
from world_monitor.models.bundle import load_bundle
from world_monitor.models.world_model import WorldModel
from world_monitor.training.evaluate import EvalOptions, evaluate_bundle
from world_monitor.training.trainer import train

UNIT_KEYS = ("ece", "mce", "brier", "auroc", "base_rate", "mean_confidence", "mean_confidence_ref")
FINITE_KEYS = (
    *UNIT_KEYS,
    "brier_skill",
    "mean_latent_l1",
    "latent_l1_copy_last",
    "psnr",
    "psnr_copy_last",
    "ssim",
    "ssim_copy_last",
    "vae_recon_psnr",
)


def _first_last(rows: list[dict], key: str) -> tuple[float, float]:
    vals = [r[key] for r in rows if key in r]
    assert len(vals) >= 2, f"metrics.jsonl has fewer than 2 values of {key}"
    return vals[0], vals[-1]


@pytest.fixture(scope="module")
def trained(
    tiny_dataset: Path, tiny_overrides: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    cfg = load_config([*tiny_overrides, "train.dynamics.steps=40", "train.vae.steps=40"])
    run = tmp_path_factory.mktemp("e2e") / "run"
    result = train(cfg, run, data_root=tiny_dataset, command="pytest e2e", progress=False)
    assert result.bundle is not None
    return run


def test_bundle_loads_and_validates(trained: Path) -> None:
    bundle = load_bundle(trained / "bundle")
    m = bundle.manifest
    assert m["model_variant"] == "diffusion"
    assert m["image_size"] == [16, 16]
    assert (m["context_length"], m["horizon"]) == (2, 3)
    assert m["latent_shape"] == [4, 4, 4]
    assert m["training_command"] == "pytest e2e"
    assert len(m["action_mean"]) == len(m["action_std"]) == 4
    model = WorldModel.from_bundle(bundle)
    assert model.config.rollout.mode == "joint"
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "command.txt",
        "action_normalizer.json",
    ):
        assert (trained / name).is_file(), name
    assert (trained / "latents" / "train.npy").is_file()


def test_training_loss_decreases(trained: Path) -> None:
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    vae = [r for r in rows if r["stage"] == "vae"]
    dyn = [r for r in rows if r["stage"] == "dynamics"]
    first, last = _first_last(vae, "mse")
    assert last < first
    first, last = _first_last(dyn, "loss")
    assert last < first
    assert all(math.isfinite(r["loss"]) for r in dyn if "loss" in r)


def test_evaluation_report(trained: Path, tmp_path: Path) -> None:
    opts = EvalOptions(
        windows=6, shift_windows=3, batch_size=4, figures=1, num_threads=1, progress=False
    )
    report = evaluate_bundle(trained / "bundle", out_dir=tmp_path, options=opts)
    on_disk = json.loads((tmp_path / "evaluation.json").read_text())
    assert on_disk["splits"].keys() == report["splits"].keys() == {"in_distribution", "lighting"}
    h = report["horizon"]
    for name, s in report["splits"].items():
        assert s["n_windows"] > 0, name
        for key in FINITE_KEYS:
            assert s[key] is not None and math.isfinite(s[key]), (name, key)
        for key in UNIT_KEYS:
            assert 0.0 <= s[key] <= 1.0, (name, key, s[key])
        assert set(s["per_eps"]) == {str(round(0.1 * k, 1)) for k in range(1, 11)}
        for key in ("spearman_rho", "spearman_p", "kendall_tau", "kendall_p"):
            assert math.isfinite(s["correlation_frame"][key]), key
        for key in ("latent_l1", "latent_l1_copy_last", "psnr", "psnr_copy_last", "ssim"):
            assert len(s["per_step"][key]) == h, key
        assert (tmp_path / f"reliability_{name}.png").is_file()
        assert (tmp_path / f"heatmaps_{name}.png").is_file()
    # the lighting episode with onset 4 contributes only windows starting at frame >= 4
    assert report["splits"]["lighting"]["n_episodes"] >= 1


def _check_split(s: dict) -> None:
    assert s["n_windows"] > 0
    for key in FINITE_KEYS:
        assert s[key] is not None and math.isfinite(s[key]), key
    for key in UNIT_KEYS:
        assert 0.0 <= s[key] <= 1.0, (key, s[key])


def test_autoregressive_mode_evaluates(trained: Path, tmp_path: Path) -> None:
    """The frame-by-frame sampler (KV cache) reads every eps through the same probe wrapper."""
    opts = EvalOptions(
        windows=4,
        shift_windows=2,
        batch_size=4,
        figures=0,
        num_threads=1,
        progress=False,
        mode="autoregressive",
        num_inference_steps=2,
    )
    report = evaluate_bundle(trained / "bundle", out_dir=tmp_path, options=opts)
    assert report["rollout"]["mode"] == "autoregressive"
    assert report["rollout"]["num_inference_steps"] == 2
    for s in report["splits"].values():
        _check_split(s)


def test_deterministic_variant_end_to_end(
    tiny_dataset: Path, tiny_overrides: list[str], tmp_path: Path
) -> None:
    cfg = load_config(
        ["model=deterministic", *tiny_overrides, "train.vae.steps=4", "train.dynamics.steps=6"]
    )
    result = train(cfg, tmp_path / "run", data_root=tiny_dataset, progress=False)
    bundle = load_bundle(result.bundle)
    assert bundle.manifest["model_variant"] == "deterministic"
    model = WorldModel.from_bundle(bundle)
    assert model.config.rollout.mode == "deterministic"
    opts = EvalOptions(
        windows=4, shift_windows=2, batch_size=4, figures=1, num_threads=1, progress=False
    )
    report = evaluate_bundle(result.bundle, out_dir=tmp_path / "eval", options=opts)
    for s in report["splits"].values():
        _check_split(s)


def test_cli_evaluate_model_and_user_errors(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from world_monitor.cli import main

    out = tmp_path / "cli_eval"
    args = ["evaluate-model", str(trained / "bundle"), "--out", str(out), "--windows", "3"]
    args += ["--shift-windows", "2", "--figures", "0", "--threads", "1", "--no-progress"]
    assert main(args) == 0
    assert (out / "evaluation.json").is_file()
    printed = capsys.readouterr().out
    assert "in_distribution" in printed
    assert "C3 label base rate per eps (in_distribution): 0.1: " in printed
    # user errors: one line, exit code 2, no traceback
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert main(["evaluate-model", str(tmp_path / "no_bundle")]) == 2
    assert main(["evaluate-model", str(trained / "bundle"), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 3
