"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

Why not ``torch.save``: a checkpoint is data we may receive from elsewhere, and unpickling runs
code. Model weights and every tensor inside an optimizer state (Adam moments, step counters) go to
one ``.safetensors`` file; the optimizer's ``param_groups`` (learning rates, betas, ...) and the
trainer's scalars go to a JSON file beside it. Randomness needs no saved state because the
trainers derive every random draw from ``(seed, step)`` (see :func:`step_generator`), so a resumed
run draws exactly what the uninterrupted run would have.

Layout of one checkpoint ``DIR/step_XXXXXXXX``::

    tensors.safetensors   "model.<module>.<param>" and "optim.<name>.<param index>.<state key>"
    state.json            {"step", "stage", "param_groups": {name: [...]}, "extra": {...}}

``state.json`` is written last and the directory is renamed into place, so a directory that exists
is complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "CheckpointError",
    "LoadedCheckpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "step_generator",
]

logger = logging.getLogger(__name__)

_STEP_RE = re.compile(r"^step_(\d{8})$")
TENSORS = "tensors.safetensors"
STATE = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not fit the model / optimizer."""


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator seeded from (seed, step, stream): stateless randomness that survives resume."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 131 + stream)


@dataclass
class LoadedCheckpoint:
    step: int
    stage: str
    extra: dict[str, Any]
    path: Path


def _optim_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{name}.{idx}.{key}"] = val.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    groups = json.loads(json.dumps(sd["param_groups"]))
    return tensors, [groups, scalars]


def save_checkpoint(
    directory: str | Path,
    step: int,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    *,
    stage: str,
    extra: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``directory/step_<step>`` atomically; keep only the newest ``keep`` checkpoints."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        tensors: dict[str, torch.Tensor] = {}
        for mname, mod in modules.items():
            for pname, t in mod.state_dict().items():
                tensors[f"model.{mname}.{pname}"] = t.detach().cpu().contiguous().clone()
        groups: dict[str, Any] = {}
        for oname, opt in optimizers.items():
            t, g = _optim_tensors(oname, opt)
            tensors.update(t)
            groups[oname] = g
        save_file(tensors, str(tmp / TENSORS))
        state = {
            "step": int(step),
            "stage": stage,
            "param_groups": groups,
            "extra": dict(extra or {}),
        }
        (tmp / STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = sorted(p for p in root.iterdir() if _STEP_RE.match(p.name))
    for p in old[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
    logger.debug("checkpoint %s", final)
    return final


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete ``step_*`` checkpoint under ``directory`` (None if there is none)."""
    root = Path(directory)
    if not root.is_dir():
        return None
    found = sorted(p for p in root.iterdir() if _STEP_RE.match(p.name) and (p / STATE).is_file())
    return found[-1] if found else None


def load_checkpoint(
    path: str | Path,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> LoadedCheckpoint:
    """Load weights and optimizer states in place; returns the step/stage/extra scalars."""
    path = Path(path)
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        tensors = load_file(str(path / TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    for mname, mod in modules.items():
        prefix = f"model.{mname}."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            mod.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: module {mname!r} does not fit: {exc}") from exc
    for oname, opt in optimizers.items():
        if oname not in state["param_groups"]:
            raise CheckpointError(f"{path}: no optimizer state {oname!r}")
        groups, scalars = state["param_groups"][oname]
        prefix = f"optim.{oname}."
        st: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix) :].split(".", 1)
                st.setdefault(int(idx), {})[key] = v
        for idx, d in scalars.items():
            st.setdefault(int(idx), {}).update(d)
        # JSON has no tuples: restore the optimizer's own types (e.g. Adam's betas)
        for g_new, g_cur in zip(groups, opt.param_groups, strict=False):
            for key, cur in g_cur.items():
                if isinstance(cur, tuple) and isinstance(g_new.get(key), list):
                    g_new[key] = tuple(g_new[key])
        try:
            opt.load_state_dict({"state": st, "param_groups": groups})
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: optimizer {oname!r} does not fit: {exc}") from exc
    return LoadedCheckpoint(
        step=int(state["step"]), stage=str(state["stage"]), extra=state.get("extra", {}), path=path
    )
