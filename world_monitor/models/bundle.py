"""The monitor bundle: one directory that fully defines a deployable monitor (architecture.md).

Layout::

    bundle/
      config.yaml           resolved model/monitor config (YAML, read with yaml.safe_load)
      weights.safetensors   every module's tensors, keys "<module>.<param>" (e.g. "vae.encoder.w")
      calibration.json      ε, thresholds, target false-alarm rate, calibration data (or null)
      manifest.json         format version, shapes, action normalisation, provenance, SHA-256 hashes

Why so strict: a monitor that silently runs with the wrong weights, a config edited after
calibration, or an image size it was not trained for gives confident nonsense on a robot. So
:func:`load_bundle` checks everything *before* returning anything and raises :class:`BundleError`
naming the file and field: missing files, hash mismatches (tampering or partial copies), unknown
format versions, missing / ill-typed manifest fields, manifest values that contradict the config
(every occurrence of ``image_size``, ``action_dim``, ``context_length``, ``horizon`` or
``latent_shape`` anywhere in the config must equal the manifest), and weights whose keys lack a
module prefix listed in the manifest (or a listed module with no tensors).

Only safe formats are read: safetensors, YAML via ``yaml.safe_load``, JSON — never pickle.
Parsing is bounded, because a re-hashed hostile file passes the hash check: each text file has a
size limit checked before it is read (:data:`MAX_FILE_BYTES`), must be valid UTF-8, may nest at
most :data:`MAX_NESTING` levels, and YAML anchors/aliases are refused outright (an alias bomb
expands to 10^9 nodes that the consistency check would walk: measured > 60 s; no bundle this
package writes uses them). Every such failure is a :class:`BundleError` naming the file.

The manifest also declares the **training action range** (``action_range``: per-dimension
``min``/``max`` of the training split's actions, a ``margin`` per dimension and its ``source``).
The gate refuses chunks outside ``[min - margin, max + margin]`` (``action_out_of_range``).
:func:`save_bundle` derives it from the config's ``action_normalizer`` (the train-split
statistics training used) with a margin of :data:`ACTION_RANGE_MARGIN` of each dimension's span
(at least that fraction of the normaliser's scale, so a dimension training never varied, like the
simulator's always-closed gripper, still has a tolerance), unless given explicitly. The manifest
is not covered by the content hashes (it holds them), so adding the field keeps every bundle's
hashes valid. An older bundle without the field still loads: the range is derived the same way
from its (hashed) config with a WARNING, and a bundle with neither has ``Bundle.action_range``
``None``, which :class:`~world_monitor.runtime.monitor.Monitor` refuses (fail closed).

calibration.json's ``thresholds`` must be finite with ``0 <= slow <= stop < 1`` (a risk never
exceeds 1, so a threshold of 1 means that level can never trigger) and its ``gate`` section may
only hold keys the gate honours (:data:`~world_monitor.runtime.gate.CALIBRATION_GATE_KEYS`).

:func:`bundle_hash` is the engine-cache key: it covers what changes a compiled engine (weights,
config, shapes) and deliberately not calibration.json, so re-calibrating does not force a
TensorRT rebuild. :func:`update_calibration` rewrites calibration.json and the manifest, each via
write-to-temp + ``os.replace``; a crash between the two replaces leaves a hash mismatch, i.e. a
bundle that refuses to load (fail closed) rather than one that runs with unverified calibration.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = [
    "ACTION_RANGE_MARGIN",
    "CALIBRATION_FILE",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MAX_FILE_BYTES",
    "MAX_NESTING",
    "WEIGHTS_FILE",
    "Bundle",
    "BundleError",
    "bundle_hash",
    "load_bundle",
    "save_bundle",
    "update_calibration",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.safetensors"
CALIBRATION_FILE = "calibration.json"
MANIFEST_FILE = "manifest.json"
HASHED_FILES = (CONFIG_FILE, WEIGHTS_FILE, CALIBRATION_FILE)
#: size limits of the text files, checked before reading (the shipped ones: 4 KB, 4 KB, 0.2 MB)
MAX_FILE_BYTES = {MANIFEST_FILE: 1 << 20, CONFIG_FILE: 4 << 20, CALIBRATION_FILE: 64 << 20}
#: deepest nesting of lists/mappings accepted in any text file (the shipped ones: 4)
MAX_NESTING = 64
#: default margin of the manifest's action range, as a fraction of each dimension's span
ACTION_RANGE_MARGIN = 0.1

# manifest field -> expected JSON type description, checked by _validate_manifest
_INT_LIST = "list[int]"
_FLOAT_LIST = "list[float]"
_MANIFEST_FIELDS: dict[str, Any] = {
    "format_version": int,
    "image_size": _INT_LIST,
    "action_dim": int,
    "action_mean": _FLOAT_LIST,
    "action_std": _FLOAT_LIST,
    "context_length": int,
    "horizon": int,
    "latent_shape": _INT_LIST,
    "model_variant": str,
    "modules": "list[str]",
    "created_at": str,
    "package_version": str,
    "training_command": str,
    "seed": int,
    "hashes": dict,
}
# manifest fields that must agree with every same-named key in config.yaml
_CONFIG_CHECKED = (
    "image_size",
    "action_dim",
    "context_length",
    "horizon",
    "latent_shape",
)


class BundleError(ValueError):
    """The bundle is missing, incomplete, tampered with or inconsistent; the message says how."""


@dataclass
class Bundle:
    """A validated bundle. ``state_dicts`` maps module name → its state dict (prefix stripped)."""

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any]
    calibration: dict[str, Any] | None
    state_dicts: dict[str, dict[str, Tensor]] = field(repr=False)
    #: the training action range (manifest ``action_range``; for an older bundle derived from
    #: its config's normaliser), ``None`` when the bundle declares none
    action_range: dict[str, Any] | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.manifest["image_size"])  # type: ignore[return-value]

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["latent_shape"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_version() -> str:
    from world_monitor import __version__

    return str(__version__)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(float(x))


def _check_type(name: str, value: object, spec: Any) -> None:
    ok: bool
    if spec is int:
        ok = _is_int(value)
    elif spec is str:
        ok = isinstance(value, str)
    elif spec is dict:
        ok = isinstance(value, dict)
    elif spec == _INT_LIST:
        ok = isinstance(value, list) and len(value) > 0 and all(_is_int(v) and v > 0 for v in value)
    elif spec == _FLOAT_LIST:
        ok = isinstance(value, list) and all(_is_number(v) for v in value)
    elif spec == "list[str]":
        ok = (
            isinstance(value, list)
            and len(value) > 0
            and all(isinstance(v, str) and v for v in value)
        )
    else:  # pragma: no cover - programming error
        raise AssertionError(spec)
    if not ok:
        shown = spec.__name__ if isinstance(spec, type) else spec
        raise BundleError(f"{MANIFEST_FILE}: field '{name}' must be {shown}, got {value!r}")


def _validate_manifest(manifest: object) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST_FILE}: must be a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version is None:
        raise BundleError(f"{MANIFEST_FILE}: missing field 'format_version'")
    if not _is_int(version) or version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{MANIFEST_FILE}: unknown format_version {version!r} "
            f"(this build reads {sorted(SUPPORTED_FORMAT_VERSIONS)})"
        )
    missing = [k for k in _MANIFEST_FIELDS if k not in manifest]
    if missing:
        raise BundleError(f"{MANIFEST_FILE}: missing field(s) {missing}")
    for name, spec in _MANIFEST_FIELDS.items():
        _check_type(name, manifest[name], spec)
    if len(manifest["image_size"]) != 2:
        raise BundleError(
            f"{MANIFEST_FILE}: image_size must be [H, W], got {manifest['image_size']}"
        )
    a = manifest["action_dim"]
    for key in ("action_mean", "action_std"):
        if len(manifest[key]) != a:
            raise BundleError(
                f"{MANIFEST_FILE}: {key} has {len(manifest[key])} values but action_dim is {a}"
            )
    if any(s <= 0 for s in manifest["action_std"]):
        raise BundleError(
            f"{MANIFEST_FILE}: action_std must be positive, got {manifest['action_std']}"
        )
    for key in ("action_dim", "context_length", "horizon"):
        if manifest[key] <= 0:
            raise BundleError(f"{MANIFEST_FILE}: {key} must be positive, got {manifest[key]}")
    hashes = manifest["hashes"]
    for fname in HASHED_FILES:
        if not isinstance(hashes.get(fname), str) or len(hashes[fname]) != 64:
            raise BundleError(f"{MANIFEST_FILE}: hashes['{fname}'] must be a SHA-256 hex digest")
    if "action_range" in manifest:
        _check_action_range(manifest["action_range"], a, MANIFEST_FILE)
    return manifest


def _check_action_range(spec: object, action_dim: int, where: str) -> dict[str, Any]:
    """A well-formed ``action_range`` (see the module docstring) or a BundleError saying why."""
    if not isinstance(spec, Mapping):
        raise BundleError(f"{where}: action_range must be an object, got {type(spec).__name__}")
    for key in ("min", "max", "margin"):
        values = spec.get(key)
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise BundleError(
                f"{where}: action_range['{key}'] must be a list of finite numbers, got {values!r}"
            )
        if len(values) != action_dim:
            raise BundleError(
                f"{where}: action_range['{key}'] has {len(values)} values but action_dim is "
                f"{action_dim}"
            )
    if any(lo > hi for lo, hi in zip(spec["min"], spec["max"], strict=True)):
        raise BundleError(
            f"{where}: action_range has min > max: min {spec['min']}, max {spec['max']}"
        )
    if any(m < 0 for m in spec["margin"]):
        raise BundleError(f"{where}: action_range['margin'] must be >= 0, got {spec['margin']}")
    if "source" in spec and not isinstance(spec["source"], str):
        raise BundleError(f"{where}: action_range['source'] must be a string")
    return dict(spec)


def action_range_from_normalizer(
    normalizer: object, margin: float = ACTION_RANGE_MARGIN
) -> dict[str, Any] | None:
    """The manifest ``action_range`` implied by a config's ``action_normalizer`` (its train-split
    min/max), with ``margin`` x max(span, normaliser scale) per dimension; ``None`` when the
    normaliser does not record min/max."""
    if not isinstance(normalizer, Mapping):
        return None
    lo, hi = normalizer.get("min"), normalizer.get("max")
    if not (isinstance(lo, list) and isinstance(hi, list) and len(lo) == len(hi) and lo):
        return None
    if not all(_is_number(v) for v in (*lo, *hi)):
        return None
    std = normalizer.get("std")
    if normalizer.get("mode", "standard") == "standard" and isinstance(std, list):
        scales = [float(v) if _is_number(v) else 0.0 for v in std]
    else:
        scales = [(float(b) - float(a)) / 2 for a, b in zip(lo, hi, strict=True)]
    scales = [s if s > 1e-6 else 1.0 for s in scales]  # the normaliser's own rule
    return {
        "min": [float(v) for v in lo],
        "max": [float(v) for v in hi],
        "margin": [
            float(margin) * max(float(b) - float(a), s)
            for a, b, s in zip(lo, hi, scales, strict=True)
        ],
        "source": (
            "min/max of the training split's actions (config.yaml action_normalizer); margin "
            f"{margin:g} x max(span, normaliser scale) per dimension"
        ),
    }


def _find_key(tree: object, key: str, where: str = "") -> list[tuple[str, object]]:
    """Every (dotted path, value) of ``key`` anywhere in a nested mapping / list."""
    found: list[tuple[str, object]] = []
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            path = f"{where}.{k}" if where else str(k)
            if k == key:
                found.append((path, v))
            found.extend(_find_key(v, key, path))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found.extend(_find_key(v, key, f"{where}[{i}]"))
    return found


def _normalise_value(v: object) -> object:
    if isinstance(v, (list, tuple)):
        return [_normalise_value(x) for x in v]
    return v


def _check_consistency(manifest: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    for key in _CONFIG_CHECKED:
        for path, value in _find_key(config, key):
            norm = _normalise_value(value)
            if key == "image_size" and _is_int(norm):
                norm = [norm, norm]  # a single int means a square image
            if norm != manifest[key]:
                raise BundleError(
                    f"{MANIFEST_FILE} disagrees with {CONFIG_FILE}: manifest {key}={manifest[key]} "
                    f"but config {path}={value!r}"
                )


_CALIBRATION_NUMBERS = {
    "eps": (0.0, math.inf),
    "target_false_alarm": (0.0, 1.0),
    "alpha": (0.0, 1.0),
}


def _validate_calibration(calibration: object, where: str) -> dict[str, Any] | None:
    """calibration.json is free-form, but the keys the gate reads must be sane numbers."""
    if calibration is None:
        return None
    if not isinstance(calibration, Mapping):
        kind = type(calibration).__name__
        raise BundleError(f"{where}: calibration must be an object or null, got {kind}")
    for key, (lo, hi) in _CALIBRATION_NUMBERS.items():
        if key in calibration:
            v = calibration[key]
            if not _is_number(v) or not lo < float(v) <= hi:
                raise BundleError(
                    f"{where}: calibration '{key}' must be a number in ({lo}, {hi}], got {v!r}"
                )
    if "threshold" in calibration and not _is_number(calibration["threshold"]):
        raise BundleError(
            f"{where}: calibration 'threshold' must be a finite number, "
            f"got {calibration['threshold']!r}"
        )
    if "thresholds" in calibration:
        _check_thresholds(calibration["thresholds"], where)
    if "gate" in calibration:
        _check_gate_section(calibration, where)
    try:
        json.dumps(calibration, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise BundleError(f"{where}: calibration is not strict JSON: {e}") from e
    return dict(calibration)


def _check_thresholds(thresholds: object, where: str) -> None:
    """SLOW/STOP thresholds the gate can act on: finite, ``0 <= slow <= stop < 1``.

    Why ``< 1``: the risk is a rank in [0, 1] and the gate alarms on risk *above* a threshold,
    so a threshold of 1 is a level that can never trigger (an uncertifiable calibration used
    to store ``stop: 1.0`` and report success)."""
    if not isinstance(thresholds, Mapping):
        raise BundleError(f"{where}: calibration 'thresholds' must be an object")
    values = {}
    for key in ("slow", "stop"):
        v = thresholds.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BundleError(
                f"{where}: calibration thresholds['{key}'] must be a finite number, got {v!r}"
            )
        if v >= 1.0:
            raise BundleError(
                f"{where}: calibration thresholds['{key}'] = {v!r} >= 1: {key.upper()} can never "
                "trigger (the risk never exceeds 1); re-run `world-monitor calibrate` with data "
                "that can certify the rate"
            )
        if v < 0.0:
            raise BundleError(
                f"{where}: calibration thresholds['{key}'] must be in [0, 1), got {v!r}"
            )
        values[key] = float(v)
    if values["slow"] > values["stop"]:
        raise BundleError(
            f"{where}: calibration thresholds are inverted: slow {values['slow']!r} > stop "
            f"{values['stop']!r}"
        )


def _check_gate_section(calibration: Mapping[str, Any], where: str) -> None:
    """The ``gate`` section holds only keys the gate honours, with values it accepts."""
    from world_monitor.runtime.gate import GateConfig, check_calibration_gate_section

    try:
        section = check_calibration_gate_section(calibration["gate"])
        thresholds = calibration.get("thresholds") or {}
        GateConfig(
            slow_threshold=float(thresholds.get("slow", 0.5)),
            stop_threshold=float(thresholds.get("stop", 0.5)),
            **section,
        )
    except (TypeError, ValueError) as e:
        raise BundleError(f"{where}: calibration 'gate' section: {e}") from e


def _nesting_ok(tree: object, limit: int = MAX_NESTING) -> bool:
    """Whether ``tree`` nests lists/mappings at most ``limit`` deep (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= limit:
            return False
        stack.extend((c, depth + 1) for c in children)
    return True


def _read_text(path: Path) -> str:
    """A bundle text file, bounded: size checked before reading, strict UTF-8."""
    limit = MAX_FILE_BYTES.get(path.name, 1 << 20)
    try:
        size = path.stat().st_size
        if size > limit:
            raise BundleError(f"{path}: too large ({size} bytes > the {limit}-byte limit)")
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: unreadable ({e})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{path}: not valid UTF-8 ({e})") from e


def _parse_json(path: Path) -> object:
    try:
        obj = json.loads(_read_text(path))
    except RecursionError:
        obj = None
        deep = True
    except ValueError as e:  # JSONDecodeError, and int-size limits
        raise BundleError(f"{path}: not valid JSON ({e})") from e
    else:
        deep = not _nesting_ok(obj)
    if deep:
        raise BundleError(f"{path}: nested too deeply (more than {MAX_NESTING} levels)")
    return obj


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases (bundle configs never use them)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            what = "an alias" if isinstance(event, yaml.AliasEvent) else "an anchor"
            raise yaml.constructor.ConstructorError(
                None, None, f"{what} (&/*) is not allowed in a bundle config", event.start_mark
            )
        return super().compose_node(parent, index)


def _parse_yaml(path: Path) -> object:
    text = _read_text(path)
    try:
        obj = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise BundleError(f"{path}: nested too deeply (more than {MAX_NESTING} levels)") from None
    except yaml.YAMLError as e:
        raise BundleError(f"{path}: not valid YAML ({e})") from e
    if not _nesting_ok(obj):
        raise BundleError(f"{path}: nested too deeply (more than {MAX_NESTING} levels)")
    return obj


def _plain_config(config: object) -> dict[str, Any]:
    """A plain-dict copy of a mapping or an OmegaConf DictConfig (resolved)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if not isinstance(config, Mapping):
        raise BundleError(f"config must be a mapping, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise BundleError(f"config holds a value that is not plain YAML/JSON data: {e}") from e


def _flatten_weights(
    state_dicts: Mapping[str, Mapping[str, Tensor]],
) -> dict[str, Tensor]:
    flat: dict[str, Tensor] = {}
    for module, sd in state_dicts.items():
        if not module or "." in module:
            raise BundleError(f"module name {module!r} must be non-empty and contain no '.'")
        if not sd:
            raise BundleError(f"module '{module}' has an empty state dict")
        for name, t in sd.items():
            if not isinstance(t, Tensor):
                raise BundleError(f"{module}.{name} is a {type(t).__name__}, not a tensor")
            # clone: safetensors refuses tensors that share storage (tied weights, views)
            flat[f"{module}.{name}"] = t.detach().cpu().contiguous().clone()
    return flat


def _write_json(path: Path, obj: object) -> None:
    path.write_text(
        json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n",
        encoding="utf-8",
    )


def _utc_now() -> str:
    # timezone.utc, not datetime.UTC: the package supports Python 3.10 (ROS 2 Humble)
    now = _dt.datetime.now(_dt.timezone.utc)  # noqa: UP017
    return now.isoformat(timespec="seconds")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write_json(path: Path, obj: object) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        _write_json(Path(tmp), obj)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(
    path: str | Path,
    state_dicts: Mapping[str, Mapping[str, Tensor]],
    config: Mapping[str, Any],
    *,
    image_size: Sequence[int],
    action_dim: int,
    action_mean: Sequence[float],
    action_std: Sequence[float],
    context_length: int,
    horizon: int,
    latent_shape: Sequence[int],
    model_variant: str,
    training_command: str,
    seed: int,
    calibration: Mapping[str, Any] | None = None,
    action_range: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle directory (built in a temp sibling, then renamed into place) and return it.

    The written bundle is re-validated with :func:`load_bundle` before the rename, so an
    inconsistent manifest/config is rejected at save time rather than on the robot.
    ``action_range`` (manifest field, module docstring) defaults to the one derived from
    ``config['action_normalizer']``; a bundle with neither is refused: the gate could not tell
    an absurd command from a normal one.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a deployed bundle is shared
    try:
        cfg = _plain_config(config)
        calibration = _validate_calibration(calibration, "save_bundle")
        if action_range is None:
            action_range = action_range_from_normalizer(cfg.get("action_normalizer"))
        if action_range is None:
            raise BundleError(
                "save_bundle: cannot write a bundle without an action range: pass "
                "action_range= or a config whose action_normalizer records min/max"
            )
        ranged = _check_action_range(dict(action_range), int(action_dim), "save_bundle")
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=True), encoding="utf-8")
        flat = _flatten_weights(state_dicts)
        # one metadata key only: safetensors writes metadata in hash-map order, so several keys
        # would make byte-identical weights hash differently from save to save
        save_file(flat, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        os.chmod(tmp / WEIGHTS_FILE, 0o666 & ~_umask())  # safetensors writes 0600
        _write_json(tmp / CALIBRATION_FILE, calibration)
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "image_size": [int(x) for x in image_size],
            "action_dim": int(action_dim),
            "action_mean": [float(x) for x in action_mean],
            "action_std": [float(x) for x in action_std],
            "context_length": int(context_length),
            "horizon": int(horizon),
            "latent_shape": [int(x) for x in latent_shape],
            "model_variant": str(model_variant),
            "modules": sorted(state_dicts),
            "created_at": _utc_now(),
            "package_version": _package_version(),
            "training_command": str(training_command),
            "seed": int(seed),
            "action_range": ranged,
            "hashes": {f: _sha256(tmp / f) for f in HASHED_FILES},
        }
        _write_json(tmp / MANIFEST_FILE, manifest)
        load_bundle(tmp)  # validate before publishing
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved bundle %s (%d tensors, modules %s)", out, len(flat), sorted(state_dicts))
    return out


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise BundleError(f"bundle directory {root} does not exist")
    for fname in (MANIFEST_FILE, *HASHED_FILES):
        if not (root / fname).is_file():
            raise BundleError(f"bundle {root}: missing file {fname}")
    return _validate_manifest(_parse_json(root / MANIFEST_FILE))


def _verify_hashes(
    root: Path, manifest: Mapping[str, Any], files: Sequence[str] = HASHED_FILES
) -> dict[str, str]:
    actual = {}
    for fname in files:
        digest = _sha256(root / fname)
        if digest != manifest["hashes"][fname]:
            raise BundleError(
                f"bundle {root}: hash mismatch for {fname} (manifest {manifest['hashes'][fname][:12]}…, "
                f"file {digest[:12]}…): the file was modified after the bundle was written"
            )
        actual[fname] = digest
    return actual


def load_bundle(path: str | Path) -> Bundle:
    """Load and fully validate a bundle (see the module docstring for what is checked)."""
    root = Path(path)
    manifest = _read_manifest(root)
    _verify_hashes(root, manifest)
    config = _parse_yaml(root / CONFIG_FILE)
    if not isinstance(config, dict):
        raise BundleError(f"{root / CONFIG_FILE}: must be a mapping, got {type(config).__name__}")
    _check_consistency(manifest, config)
    calibration = _parse_json(root / CALIBRATION_FILE)
    calibration = _validate_calibration(calibration, str(root / CALIBRATION_FILE))
    action_range = manifest.get("action_range")
    if action_range is None:
        action_range = action_range_from_normalizer(config.get("action_normalizer"))
        if action_range is not None:
            action_range["source"] = f"derived at load (older bundle): {action_range['source']}"
            try:
                _check_action_range(action_range, manifest["action_dim"], str(root / CONFIG_FILE))
            except BundleError as e:
                raise BundleError(f"{e} (derived: the manifest has no action_range)") from None
            logger.warning(
                "%s: manifest has no action_range (older bundle); using the training range "
                "from %s's action_normalizer with a %g margin",
                root,
                CONFIG_FILE,
                ACTION_RANGE_MARGIN,
            )
        else:
            logger.warning(
                "%s: manifest has no action_range and %s has no action_normalizer min/max: a "
                "Monitor will refuse this bundle",
                root,
                CONFIG_FILE,
            )
    try:
        flat = load_file(str(root / WEIGHTS_FILE))
    except (SafetensorError, OSError) as e:
        raise BundleError(f"{root / WEIGHTS_FILE}: unreadable safetensors file ({e})") from e
    modules = set(manifest["modules"])
    state_dicts: dict[str, dict[str, Tensor]] = {m: {} for m in modules}
    for key, tensor in flat.items():
        prefix, sep, rest = key.partition(".")
        if not sep or not rest or prefix not in modules:
            raise BundleError(
                f"{WEIGHTS_FILE}: tensor '{key}' has no module prefix listed in the manifest {sorted(modules)}"
            )
        state_dicts[prefix][rest] = tensor
    empty = sorted(m for m, sd in state_dicts.items() if not sd)
    if empty:
        raise BundleError(
            f"{WEIGHTS_FILE}: no tensors for module(s) {empty} listed in the manifest"
        )
    logger.info(
        "loaded bundle %s (variant %s, modules %s)",
        root,
        manifest["model_variant"],
        sorted(modules),
    )
    return Bundle(
        path=root,
        config=config,
        manifest=manifest,
        calibration=calibration,
        state_dicts=state_dicts,
        action_range=None if action_range is None else dict(action_range),
    )


def bundle_hash(path: str | Path) -> str:
    """SHA-256 content key for engine caches: weights + config + the shapes a compiled graph bakes in.

    Verifies the config and weights hashes first, so a tampered bundle never yields a cache key.
    """
    root = Path(path)
    manifest = _read_manifest(root)
    digests = _verify_hashes(root, manifest, (CONFIG_FILE, WEIGHTS_FILE))
    key = {
        "format_version": manifest["format_version"],
        "config": digests[CONFIG_FILE],
        "weights": digests[WEIGHTS_FILE],
        **{
            k: manifest[k]
            for k in (
                "image_size",
                "latent_shape",
                "context_length",
                "horizon",
                "action_dim",
            )
        },
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def update_calibration(path: str | Path, calibration: Mapping[str, Any] | None) -> None:
    """Replace calibration.json and its manifest hash (the bundle must be valid beforehand)."""
    root = Path(path)
    # refuse to bless a bundle that is already bad, or a calibration the gate cannot use
    bundle_manifest = load_bundle(root).manifest
    calibration = _validate_calibration(calibration, "update_calibration")
    fd, tmp = tempfile.mkstemp(prefix=f".{CALIBRATION_FILE}.", dir=root)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        _write_json(tmp_path, calibration)
        os.chmod(tmp_path, (root / CALIBRATION_FILE).stat().st_mode & 0o777)
        manifest = dict(bundle_manifest)
        manifest["hashes"] = {**manifest["hashes"], CALIBRATION_FILE: _sha256(tmp_path)}
        os.replace(tmp_path, root / CALIBRATION_FILE)
        _atomic_write_json(root / MANIFEST_FILE, manifest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    logger.info("updated calibration of bundle %s", root)
