"""Labels for recorded episodes: which bags show a shift, from when, how strong, and whether the
task succeeded.

Why: a team's own recordings carry no ground truth. Without it a recorded shift (the lights
off, a new object) imports as in-distribution and silently pollutes calibration and
evaluation. A labels file names, per bag (or episode id), what the simulator knows for its
own episodes, so recorded shifts become named test families:

CSV (header row; empty cells mean "not given")::

    bag,shift,onset_s,severity,success,failure_s,scenario
    run_017,lights_off,4.5,1.0,false,7.2,
    run_018,,,,true,,

or YAML (a list of the same keys, or a mapping ``bag -> {keys}``)::

    - {bag: run_017, shift: lights_off, onset_s: 4.5, severity: 1.0, success: false}
    - {bag: run_018, success: true}

``bag`` matches the bag's directory (or file) name, its path as given, or the episode id it is
imported as. ``onset_s`` / ``failure_s`` are seconds from the episode's first frame (recordings
are timed in seconds; frame indices shift when edge frames are trimmed). An empty ``shift`` (or
``none``) is in-distribution. Unknown columns, unknown bags, duplicate rows and out-of-range
times are errors naming the row, before anything is imported.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.episode import Episode, EpisodeMeta

__all__ = ["LABEL_KEYS", "EpisodeLabel", "LabelError", "apply_label", "load_labels"]

MAX_LABELS_BYTES = 8 * 1024 * 1024
LABEL_KEYS = ("bag", "shift", "onset_s", "severity", "success", "failure_s", "scenario")
_NONE = {"", "none", "null", "-"}
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


class LabelError(ValueError):
    """The labels file is unreadable or a row is invalid (the message names file and row)."""


@dataclass(frozen=True)
class EpisodeLabel:
    """Ground truth for one recorded episode (``None`` = not given)."""

    bag: str
    shift: str | None = None
    onset_s: float | None = None
    severity: float | None = None
    success: bool | None = None
    failure_s: float | None = None
    scenario: str | None = None


def load_labels(path: str | Path) -> dict[str, EpisodeLabel]:
    """Parse a CSV or YAML labels file into ``{bag key: label}``; raise :class:`LabelError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LabelError(f"{path}: cannot read labels ({exc.strerror})") from None
    if size > MAX_LABELS_BYTES:
        raise LabelError(f"{path}: labels file is {size} bytes (limit {MAX_LABELS_BYTES})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read labels ({exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        rows = _yaml_rows(path, text)
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    out: dict[str, EpisodeLabel] = {}
    for i, row in enumerate(rows):
        where = f"{path}: row {i + 2 if path.suffix.lower() not in ('.yaml', '.yml') else i + 1}"
        label = _label(where, row)
        if label.bag in out:
            raise LabelError(f"{where}: bag {label.bag!r} is labelled twice")
        out[label.bag] = label
    return out


def _yaml_rows(path: Path, text: str) -> list[dict[str, Any]]:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabelError(f"{path}: not valid YAML ({exc})".splitlines()[0]) from None
    if doc is None:
        return []
    if isinstance(doc, dict):
        rows = []
        for bag, fields in doc.items():
            if not isinstance(fields, dict):
                raise LabelError(f"{path}: entry {bag!r} must be a mapping of label keys")
            rows.append({"bag": bag, **fields})
        return rows
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        return doc
    raise LabelError(f"{path}: expected a list of rows or a mapping bag -> labels")


def _label(where: str, row: dict[str, Any]) -> EpisodeLabel:
    if None in row:  # csv.DictReader files surplus cells under None
        raise LabelError(f"{where}: more cells than the header has columns")
    unknown = sorted(str(k) for k in row if k not in LABEL_KEYS)
    if unknown:
        raise LabelError(f"{where}: unknown column(s) {unknown}; expected {list(LABEL_KEYS)}")
    cell = {k: _blank(row.get(k)) for k in LABEL_KEYS}
    if cell["bag"] is None:
        raise LabelError(f"{where}: 'bag' is empty")
    shift = cell["shift"]
    fields: dict[str, Any] = {
        "bag": str(cell["bag"]),
        "shift": None if shift is None else str(shift),
        "scenario": None if cell["scenario"] is None else str(cell["scenario"]),
    }
    for key in ("onset_s", "severity", "failure_s"):
        fields[key] = None if cell[key] is None else _number(where, key, cell[key])
    fields["success"] = None if cell["success"] is None else _bool(where, cell["success"])
    label = EpisodeLabel(**fields)
    if label.shift is None and (label.onset_s is not None or label.severity is not None):
        raise LabelError(f"{where}: onset_s/severity given without a shift name")
    if label.success is True and label.failure_s is not None:
        raise LabelError(f"{where}: failure_s given for a successful episode")
    return label


def _blank(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in _NONE:
        return None
    return value.strip() if isinstance(value, str) else value


def _number(where: str, key: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise LabelError(f"{where}: {key} {value!r} is not a number") from None
    if not math.isfinite(x) or x < 0:
        raise LabelError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
    return x


def _bool(where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LabelError(f"{where}: success {value!r} is not true/false")


def label_for(labels: dict[str, EpisodeLabel], bag: Path, episode_id: str) -> EpisodeLabel | None:
    """The label row of ``bag``: by name, path as given, or episode id (first that matches)."""
    return label_for_keys(labels, (bag.name, str(bag), bag.stem, episode_id))


def label_for_keys(labels: dict[str, EpisodeLabel], keys: Sequence[str]) -> EpisodeLabel | None:
    """The label row under the first of ``keys`` that the labels name (a recording's names)."""
    for key in keys:
        if key in labels:
            return labels[key]
    return None


def _frame_at(episode: Episode, seconds: float, what: str) -> int:
    """Index of the first frame at or after ``seconds`` from the first frame (within 10 µs:
    stamps near 1.7e9 s carry ~0.2 µs of float64 rounding, so 0.6 s may read 0.5999998 s)."""
    rel = episode.stamps - episode.stamps[0]
    idx = int(np.searchsorted(rel, seconds - 1e-5, side="left"))
    if idx >= episode.length:
        raise LabelError(
            f"{what} {seconds:g} s is after the episode's last frame ({rel[-1]:.3f} s)"
        )
    return idx


def apply_label(episode: Episode, label: EpisodeLabel) -> Episode:
    """A copy of ``episode`` whose meta carries ``label`` (shift, onset, severity, success)."""
    meta = episode.meta
    changes: dict[str, Any] = {}
    extra = dict(meta.extra)
    if label.scenario is not None:
        changes["scenario"] = label.scenario
    if label.shift is not None:
        changes["shift"] = label.shift
        changes["severity"] = label.severity
        onset = 0.0 if label.onset_s is None else label.onset_s
        changes["shift_onset"] = _frame_at(episode, onset, "onset_s")
    if label.success is not None:
        changes["success"] = label.success
        extra["success_known"] = True
    if label.failure_s is not None:
        changes["success"] = False
        changes["failure_step"] = _frame_at(episode, label.failure_s, "failure_s")
        extra["success_known"] = True
    extra["labelled_from"] = label.bag
    new_meta: EpisodeMeta = dataclasses.replace(meta, **changes, extra=extra)
    return Episode(episode.frames, episode.actions, episode.stamps, new_meta, episode.shift_mask)
