"""Monitor bundle: round trip, content hash, calibration update, and every rejection path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from world_monitor.models.bundle import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    BundleError,
    bundle_hash,
    load_bundle,
    save_bundle,
    update_calibration,
)

torch.set_num_threads(1)

CONFIG = {
    "model": {"image_size": [64, 64], "latent_shape": [4, 16, 16], "horizon": 4},
    "data": {"context_length": 2},
}


def _save(path: Path, **over) -> Path:
    torch.manual_seed(0)
    shared = torch.randn(3, 3)
    state = {
        "vae": {"enc.weight": torch.randn(4, 3), "enc.bias": torch.zeros(4)},
        "dynamics": {"w": shared, "w_tied": shared},  # tied tensors must still save
        "probe": {"head.weight": torch.zeros(2, 2)},
    }
    kwargs = {
        "image_size": (64, 64),
        "action_dim": 4,
        "action_mean": [0.0, 0.0, 0.0, 0.5],
        "action_std": [0.1, 0.1, 0.1, 0.5],
        "context_length": 2,
        "horizon": 4,
        "latent_shape": (4, 16, 16),
        "model_variant": "diffusion-csbc",
        "training_command": "world-monitor train model=tiny seed=3",
        "seed": 3,
        "calibration": {"eps": 0.3, "threshold": 0.41, "target_false_alarm": 0.05},
        "action_range": {"min": [-1.0] * 4, "max": [1.0] * 4, "margin": [0.1] * 4},
    }
    kwargs.update(over)
    return save_bundle(path, state, CONFIG, **kwargs)


def test_round_trip(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    b = load_bundle(p)
    assert sorted(b.state_dicts) == ["dynamics", "probe", "vae"]
    assert torch.equal(b.state_dicts["dynamics"]["w"], b.state_dicts["dynamics"]["w_tied"])
    assert b.state_dicts["vae"]["enc.weight"].shape == (4, 3)
    assert b.config == CONFIG and b.calibration["threshold"] == 0.41
    assert b.image_size == (64, 64) and b.latent_shape == (4, 16, 16)
    m = b.manifest
    assert (
        m["format_version"] == 1
        and m["seed"] == 3
        and m["action_dim"] == 4
        and m["package_version"]
    )
    assert set(m["hashes"]) == {CONFIG_FILE, WEIGHTS_FILE, CALIBRATION_FILE}
    with pytest.raises(BundleError, match="already exists"):
        _save(p)
    _save(p, overwrite=True, seed=9)
    assert load_bundle(p).manifest["seed"] == 9


def test_hash_and_calibration_update(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    h = bundle_hash(p)
    assert len(h) == 64 and h == bundle_hash(p)
    update_calibration(p, {"eps": 0.5, "threshold": 0.2})
    b = load_bundle(p)
    assert b.calibration == {"eps": 0.5, "threshold": 0.2}
    assert bundle_hash(p) == h  # calibration is not part of the engine cache key
    # different provenance, same weights/config/shapes
    q = _save(tmp_path / "c", seed=4)
    assert bundle_hash(q) == h
    update_calibration(p, None)
    assert load_bundle(p).calibration is None


def test_tampered_weights(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    save_file({"vae.enc.weight": torch.ones(4, 3)}, str(p / WEIGHTS_FILE))
    with pytest.raises(BundleError, match=r"hash mismatch for weights\.safetensors"):
        load_bundle(p)
    with pytest.raises(BundleError, match="hash mismatch"):
        bundle_hash(p)


def test_tampered_config(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    (p / CONFIG_FILE).write_text((p / CONFIG_FILE).read_text() + "extra: 1\n")
    with pytest.raises(BundleError, match=r"hash mismatch for config\.yaml"):
        load_bundle(p)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE, CALIBRATION_FILE, MANIFEST_FILE])
def test_missing_file(tmp_path: Path, name: str) -> None:
    p = _save(tmp_path / "b")
    (p / name).unlink()
    with pytest.raises(BundleError, match=f"missing file {name}"):
        load_bundle(p)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def _edit_manifest(p: Path, **changes) -> None:
    m = json.loads((p / MANIFEST_FILE).read_text())
    for k, v in changes.items():
        if v is None:
            del m[k]
        else:
            m[k] = v
    (p / MANIFEST_FILE).write_text(json.dumps(m))


def test_manifest_inconsistent_with_config(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    _edit_manifest(p, image_size=[128, 128])
    with pytest.raises(
        BundleError,
        match=r"disagrees with config\.yaml: manifest image_size=\[128, 128\]",
    ):
        load_bundle(p)
    with pytest.raises(BundleError, match="disagrees"):  # also caught at save time
        _save(tmp_path / "c", horizon=8)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 99}, "unknown format_version 99"),
        ({"seed": None}, r"missing field\(s\) \['seed'\]"),
        ({"horizon": "4"}, "field 'horizon' must be int"),
        ({"action_std": [0.1, 0.1]}, "action_std has 2 values but action_dim is 4"),
    ],
)
def test_bad_manifest_fields(tmp_path: Path, changes: dict, message: str) -> None:
    p = _save(tmp_path / "b")
    _edit_manifest(p, **changes)
    with pytest.raises(BundleError, match=message):
        load_bundle(p)


def _rewrite_weights(p: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the weights and re-bless the manifest hash, as a careless tool would."""
    import hashlib

    save_file(tensors, str(p / WEIGHTS_FILE))
    m = json.loads((p / MANIFEST_FILE).read_text())
    m["hashes"][WEIGHTS_FILE] = hashlib.sha256((p / WEIGHTS_FILE).read_bytes()).hexdigest()
    (p / MANIFEST_FILE).write_text(json.dumps(m))


def test_weights_with_missing_or_unknown_prefix(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    _rewrite_weights(p, {"vae.w": torch.ones(1), "dynamics.w": torch.ones(1)})
    with pytest.raises(BundleError, match=r"no tensors for module\(s\) \['probe'\]"):
        load_bundle(p)
    _rewrite_weights(
        p,
        {
            "vae.w": torch.ones(1),
            "dynamics.w": torch.ones(1),
            "probe.w": torch.ones(1),
            "w": torch.ones(1),
        },
    )
    with pytest.raises(BundleError, match="tensor 'w' has no module prefix"):
        load_bundle(p)


def test_config_is_safe_yaml(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    assert yaml.safe_load((p / CONFIG_FILE).read_text()) == CONFIG
    (p / CONFIG_FILE).write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(BundleError):  # hash mismatch first; never executed
        load_bundle(p)


def test_calibration_and_config_validation(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    with pytest.raises(BundleError, match="calibration 'target_false_alarm' must be a number"):
        _save(tmp_path / "a", calibration={"target_false_alarm": 1.5})
    with pytest.raises(BundleError, match="not strict JSON"):
        _save(tmp_path / "a", calibration={"per_eps": [float("nan")]})
    assert not (tmp_path / "a").exists()  # nothing half-written is left behind
    p = _save(tmp_path / "b")
    with pytest.raises(BundleError, match="'threshold' must be a finite number"):
        update_calibration(p, {"threshold": "high"})
    assert load_bundle(p).calibration["threshold"] == 0.41  # untouched
    cfg = OmegaConf.create({"model": {"image_size": 64, "h": "${model.image_size}"}})
    b = load_bundle(save_bundle(tmp_path / "c", {"m": {"w": torch.ones(1)}}, cfg, **_MIN))
    assert b.config == {"model": {"image_size": 64, "h": 64}}  # resolved; int = square image


_MIN = {
    "image_size": (64, 64),
    "action_dim": 1,
    "action_mean": [0.0],
    "action_std": [1.0],
    "context_length": 1,
    "horizon": 1,
    "latent_shape": (4, 16, 16),
    "model_variant": "deterministic",
    "training_command": "test",
    "seed": 0,
    "action_range": {"min": [-1.0], "max": [1.0], "margin": [0.0]},
}
