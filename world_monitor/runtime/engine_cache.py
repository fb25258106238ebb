"""TensorRT engine cache: where plans live, when they must be rebuilt, and which are stale.

Why so explicit: a serialized TensorRT plan is only valid for the exact GPU model and TensorRT
version that built it, and for the exact weights it was built from. Loading a plan from another
GPU/TRT fails at best and misbehaves at worst; building one takes minutes. So every plan is stored
under a directory named by its key, with a JSON sidecar recording the key *and* the SHA-256 of
the ONNX it came from; a lookup compares all of it and says precisely why a rebuild is needed.

Layout (architecture.md ``engines/``)::

    engines/<model_hash>/onnx/...                                  (runtime.export)
    engines/<model_hash>/trt/<gpu-slug>_trt<version>_<precision>/<graph>.plan
    engines/<model_hash>/trt/<gpu-slug>_trt<version>_<precision>/<graph>.json   (sidecar)

Isaac ROS vocabulary: ``engine_file_path`` overrides the location of one plan (its sidecar is
``<engine_file_path>.json``), ``force_engine_update`` rebuilds even on a valid hit.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CacheLookup", "EngineCache", "EngineKey", "StaleEngine"]

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = "world_monitor.trt_engine"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """Everything a plan's validity depends on."""

    model_hash: str
    graph: str
    gpu_name: str
    trt_version: str
    precision: str = "fp16"

    @property
    def digest(self) -> str:
        """Short stable hash of the whole key (for logs and sidecars)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def variant_dir(self) -> str:
        return f"{_slug(self.gpu_name)}_trt{_slug(self.trt_version)}_{self.precision}"


@dataclass
class CacheLookup:
    """Result of :meth:`EngineCache.lookup`: ``hit`` or the reasons a (re)build is needed."""

    key: EngineKey
    engine_path: Path
    sidecar_path: Path
    hit: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "cache hit"


@dataclass
class StaleEngine:
    """A cached plan that no longer matches this machine/model (reported, never loaded)."""

    engine_path: Path
    reasons: list[str]


class EngineCache:
    """Plans under ``engines_dir`` keyed by :class:`EngineKey`."""

    def __init__(self, engines_dir: str | Path = "engines") -> None:
        self.root = Path(engines_dir)

    # ------------------------------------------------------------------ paths
    def engine_path(self, key: EngineKey, engine_file_path: str | Path | None = None) -> Path:
        if engine_file_path is not None:
            return Path(engine_file_path)
        return self.root / key.model_hash / "trt" / key.variant_dir / f"{key.graph}.plan"

    @staticmethod
    def sidecar_path(engine_path: Path) -> Path:
        return engine_path.with_name(engine_path.name + ".json")

    # ------------------------------------------------------------------ lookup
    def lookup(
        self,
        key: EngineKey,
        onnx_sha256: str | None = None,
        *,
        force_engine_update: bool = False,
        engine_file_path: str | Path | None = None,
        build_options: dict[str, Any] | None = None,
    ) -> CacheLookup:
        """Is there a valid plan for ``key`` (built from ``onnx_sha256`` with ``build_options``)?"""
        path = self.engine_path(key, engine_file_path)
        side = self.sidecar_path(path)
        reasons: list[str] = []
        if force_engine_update:
            reasons.append("force_engine_update is set")
        if not path.is_file():
            reasons.append(f"no engine at {path}")
        elif not side.is_file():
            reasons.append(f"engine {path} has no sidecar {side.name} (unknown provenance)")
        else:
            reasons += self._mismatches(side, key, onnx_sha256, build_options, path)
        return CacheLookup(key, path, side, hit=not reasons, reasons=reasons)

    def _mismatches(
        self,
        side: Path,
        key: EngineKey,
        onnx_sha256: str | None,
        build_options: dict[str, Any] | None,
        engine_path: Path,
    ) -> list[str]:
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return [f"sidecar {side} unreadable ({exc})"]
        if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
            return [f"sidecar {side} is not a world_monitor engine sidecar"]
        reasons = []
        for name, want in asdict(key).items():
            have = meta.get("key", {}).get(name)
            if have != want:
                reasons.append(f"{name} changed ({have!r} -> {want!r})")
        if onnx_sha256 is not None and meta.get("onnx_sha256") != onnx_sha256:
            reasons.append("ONNX file changed since the engine was built")
        if build_options is not None and meta.get("build_options") != build_options:
            reasons.append(
                f"build options changed ({meta.get('build_options')} -> {build_options})"
            )
        size = meta.get("engine_bytes")
        if size is not None and engine_path.stat().st_size != size:
            reasons.append("engine file size differs from the sidecar (truncated copy?)")
        return reasons

    # ------------------------------------------------------------------ store
    def store(
        self,
        lookup: CacheLookup,
        plan: bytes,
        *,
        onnx_sha256: str,
        build_options: dict[str, Any],
        build_seconds: float,
    ) -> Path:
        """Write ``plan`` and its sidecar atomically (temp file + ``os.replace``), plan first."""
        path = lookup.engine_path
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, plan)
        meta = {
            "format": SIDECAR_FORMAT,
            "key": asdict(lookup.key),
            "key_digest": lookup.key.digest,
            "onnx_sha256": onnx_sha256,
            "build_options": build_options,
            "build_seconds": round(build_seconds, 2),
            "engine_bytes": len(plan),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        _atomic_write(lookup.sidecar_path, json.dumps(meta, indent=2, sort_keys=True).encode())
        logger.info("stored TensorRT engine %s (%d bytes)", path, len(plan))
        return path

    # ------------------------------------------------------------------ housekeeping
    def find_stale(self, model_hash: str, gpu_name: str, trt_version: str) -> list[StaleEngine]:
        """Plans of ``model_hash`` built for another GPU or TensorRT version (or without a
        readable sidecar). They are reported (logged) so an operator can delete them; they are
        never loaded."""
        base = self.root / model_hash / "trt"
        stale: list[StaleEngine] = []
        if not base.is_dir():
            return stale
        for plan in sorted(base.rglob("*.plan")):
            side = self.sidecar_path(plan)
            try:
                key = json.loads(side.read_text(encoding="utf-8"))["key"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError):
                stale.append(StaleEngine(plan, ["missing or unreadable sidecar"]))
                continue
            reasons = []
            if key.get("gpu_name") != gpu_name:
                reasons.append(f"built for GPU {key.get('gpu_name')!r}, this is {gpu_name!r}")
            if key.get("trt_version") != trt_version:
                reasons.append(
                    f"built with TensorRT {key.get('trt_version')}, this is {trt_version}"
                )
            if reasons:
                stale.append(StaleEngine(plan, reasons))
        for s in stale:
            logger.warning("stale TensorRT engine %s: %s", s.engine_path, "; ".join(s.reasons))
        return stale


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
