"""Bundle loading is bounded and names the file (issue 14, item 7), and the manifest declares the
training action range the gate enforces (item 1).

The hostile files are re-hashed into the manifest, as an attacker (or a confused hand edit
followed by a re-hash) would, so they get past the hash check and reach the parsers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from world_monitor.models.bundle import (
    ACTION_RANGE_MARGIN,
    CALIBRATION_FILE,
    CONFIG_FILE,
    MANIFEST_FILE,
    BundleError,
    load_bundle,
    save_bundle,
)

NORMALISER = {
    "format": "world_monitor.action_normalizer",
    "version": 1,
    "mode": "standard",
    "count": 100,
    "mean": [0.0, 0.0, 0.0, -1.0],
    "std": [0.015, 0.015, 0.02, 0.0],
    "min": [-0.03, -0.03, -0.03, -1.0],
    "max": [0.03, 0.03, 0.03, -1.0],
}
CONFIG = {
    "model": {"image_size": [64, 64], "latent_shape": [4, 16, 16], "horizon": 4},
    "action_normalizer": NORMALISER,
}
KWARGS = {
    "image_size": (64, 64),
    "action_dim": 4,
    "action_mean": [0.0, 0.0, 0.0, -1.0],
    "action_std": [0.015, 0.015, 0.02, 1.0],
    "context_length": 2,
    "horizon": 4,
    "latent_shape": (4, 16, 16),
    "model_variant": "deterministic",
    "training_command": "test",
    "seed": 0,
    "calibration": {"eps": 0.3},
}


def _save(path: Path, config: dict | None = None, **over) -> Path:
    state = {"vae": {"w": torch.ones(2)}, "dynamics": {"w": torch.ones(2)}}
    return save_bundle(path, state, config or CONFIG, **{**KWARGS, **over})


def _rehash(bundle: Path, fname: str, data: bytes) -> None:
    (bundle / fname).write_bytes(data)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["hashes"][fname] = hashlib.sha256(data).hexdigest()
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


# ---------------------------------------------------------------------------- action range
def test_save_writes_the_training_action_range_with_its_margin(tmp_path: Path) -> None:
    ar = load_bundle(_save(tmp_path / "b")).manifest["action_range"]
    assert ar["min"] == NORMALISER["min"] and ar["max"] == NORMALISER["max"]
    # margin: a fraction of the span, at least that fraction of the normaliser's scale (1 for
    # the constant gripper), so a dimension training never varied still has a tolerance
    assert ar["margin"] == pytest.approx([ACTION_RANGE_MARGIN * 0.06] * 3 + [ACTION_RANGE_MARGIN])
    assert "action_normalizer" in ar["source"]
    explicit = {"min": [-1.0] * 4, "max": [1.0] * 4, "margin": [0.0] * 4, "source": "spec"}
    b = load_bundle(_save(tmp_path / "c", action_range=explicit))
    assert b.manifest["action_range"] == explicit and b.action_range == explicit


def test_save_refuses_a_bundle_without_any_action_range(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="action range"):
        _save(tmp_path / "b", config={"model": CONFIG["model"]})
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda a: a.__setitem__("min", [0.1, 0, 0, 0]), "min > max"),
        (lambda a: a.__setitem__("max", [1.0]), "action_dim is 4"),
        (lambda a: a.__setitem__("margin", [-1.0] * 4), "margin"),
        (lambda a: a.__setitem__("min", ["x"] * 4), "action_range"),
        (lambda a: a.pop("margin"), "margin"),
    ],
)
def test_malformed_action_range_is_refused(tmp_path: Path, edit, needle: str) -> None:
    p = _save(tmp_path / "b")
    manifest = json.loads((p / MANIFEST_FILE).read_text())
    edit(manifest["action_range"])
    (p / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="action_range") as info:
        load_bundle(p)
    assert needle in str(info.value)


def test_older_bundle_without_the_field_derives_it_from_its_normaliser(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = _save(tmp_path / "b")
    manifest = json.loads((p / MANIFEST_FILE).read_text())
    written = manifest.pop("action_range")
    (p / MANIFEST_FILE).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="world_monitor.models.bundle"):
        b = load_bundle(p)
    assert "action_range" not in b.manifest
    derived = b.action_range
    assert derived is not None
    assert {k: derived[k] for k in ("min", "max", "margin")} == {
        k: written[k] for k in ("min", "max", "margin")
    }
    assert "older bundle" in derived["source"]
    assert any("no action_range" in r.message for r in caplog.records)


# ---------------------------------------------------------------------------- bounded parsing
_BOMB = "\n".join(
    ["a: &a ['x','x','x','x','x','x','x','x','x','x']"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    + ["model: {horizon: 4}", ""]
)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """In a child process with a timeout: the old code walked the 10^9-node expansion."""
    p = _save(tmp_path / "b")
    _rehash(p, CONFIG_FILE, _BOMB.encode())
    code = (
        "import sys, time; from world_monitor.models.bundle import load_bundle, BundleError\n"
        "t = time.perf_counter()\n"
        f"try:\n    load_bundle({str(p)!r})\nexcept BundleError as e:\n"
        "    print('REFUSED', time.perf_counter() - t, e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout
    assert out.startswith("REFUSED"), out
    assert float(out.split()[1]) < 5.0
    assert CONFIG_FILE in out and "alias" in out


@pytest.mark.parametrize(
    ("fname", "data", "needle"),
    [
        (MANIFEST_FILE, b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (MANIFEST_FILE, b'{"format_version": 1, "x": "\xff\xfe"}', "UTF-8"),
        (CONFIG_FILE, b"model: {horizon: 4}\nname: \xff\xfe\n", "UTF-8"),
        (CONFIG_FILE, b"x: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nested too deeply"),
        (CALIBRATION_FILE, b'{"eps": 0.3, "note": "\xc3\x28"}', "UTF-8"),
        (CALIBRATION_FILE, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (CONFIG_FILE, b"model: {horizon: 4}\n# " + b"x" * (5 << 20) + b"\n", "too large"),
    ],
    ids=[
        "manifest-deep",
        "manifest-utf8",
        "config-utf8",
        "config-deep",
        "calib-utf8",
        "calib-deep",
        "config-huge",
    ],
)
def test_hostile_files_are_named_bundle_errors(
    tmp_path: Path, fname: str, data: bytes, needle: str
) -> None:
    p = _save(tmp_path / "b")
    if fname == MANIFEST_FILE:
        (p / fname).write_bytes(data)
    else:
        _rehash(p, fname, data)
    t0 = time.perf_counter()
    with pytest.raises(BundleError) as info:
        load_bundle(p)
    assert time.perf_counter() - t0 < 10.0
    msg = str(info.value)
    assert fname in msg and needle in msg, msg


def test_anchors_without_aliases_are_refused_too(tmp_path: Path) -> None:
    p = _save(tmp_path / "b")
    cfg = yaml.safe_dump(CONFIG).replace("model:", "model: &m", 1)
    _rehash(p, CONFIG_FILE, cfg.encode())
    with pytest.raises(BundleError, match="anchor"):
        load_bundle(p)
