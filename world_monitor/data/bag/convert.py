"""Dataset <-> bag conversion of many episodes at once (the CLI's export-bag / import-bag).

Why here: both directions need the same per-episode error policy -- one bad bag must not abort
importing a hundred good ones, and every failure is reported by bag with its reason.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.export import export_episode_bag
from world_monitor.data.bag.importer import load_episode_bag
from world_monitor.data.labels import EpisodeLabel
from world_monitor.data.recorded import AUTO_SPLIT_STOP_ALPHA, EpisodeSource, import_episodes

__all__ = ["AUTO_SPLIT_STOP_ALPHA", "export_path", "import_paths"]

log = logging.getLogger(__name__)


def export_path(
    source: Path,
    out: Path,
    *,
    split: str | None = None,
    shift: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    skip_existing: bool = True,
    **kwargs: Any,
) -> list[Path]:
    """Export episodes of the dataset ``source`` as one bag per episode: ``out/<episode_id>/``.

    ``split`` / ``shift`` filter (``shift="none"`` = in-distribution only, ``None`` = all),
    ``limit`` caps the count; other keyword arguments go to :func:`export_episode_bag`.
    Resumable: complete bags already in ``out`` are kept.
    """
    from world_monitor.data.dataset import EpisodeDataset

    ds = EpisodeDataset(source)
    if split is not None or shift is not None:
        shift_sel: Any = ... if shift is None else (None if shift.lower() == "none" else shift)
        ds = ds.select(split=split, shift=shift_sel)
    n = len(ds) if limit is None else min(limit, len(ds))
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i in tqdm(range(n), desc="export bags", unit="ep", disable=not progress):
        rec = ds.record(i)
        target = out / rec.id
        if skip_existing and (target / "metadata.yaml").exists():
            written.append(target)
            continue
        written.append(export_episode_bag(ds[i], target, **kwargs))
    log.info("exported %d bag(s) from %s to %s", len(written), source, out)
    return written


def _episode_id(path: Path, taken: set[str]) -> str:
    base = path.name if path.is_dir() else path.stem
    eid = re.sub(r"[^A-Za-z0-9_.\-]", "_", base).lstrip(".") or "bag"
    candidate, k = eid, 1
    while candidate in taken:
        k += 1
        candidate = f"{eid}-{k}"
    taken.add(candidate)
    return candidate


def import_paths(
    bags: Sequence[Path],
    out: Path,
    *,
    split: str = "test",
    progress: bool = True,
    frame_prep: Any = None,
    labels: Mapping[str, EpisodeLabel] | None = None,
    split_seed: int = 0,
    stop_alpha: float = AUTO_SPLIT_STOP_ALPHA,
    **kwargs: Any,
) -> dict[str, Any]:
    """Import bags into the dataset ``out`` (created or extended), one episode per bag.

    The episode id is the bag's directory (or file stem) name, made filesystem-safe; a labels
    row may name the bag by that name, its path as given, or the episode id. Keyword arguments
    go to :func:`load_episode_bag` (topics, tolerance, on_missing, action_field, ...); the rest
    (splits, labels, resizing, per-bag error policy) is
    :func:`~world_monitor.data.recorded.import_episodes`, whose summary this returns.
    """
    taken: set[str] = set()
    sources = []
    for bag in map(Path, bags):
        eid = _episode_id(bag, taken)
        sources.append(
            EpisodeSource(
                episode_id=eid,
                label_keys=(bag.name, str(bag), bag.stem, eid),
                load=functools.partial(_load_bag, bag, kwargs),
                name=str(bag),
            )
        )
    return import_episodes(
        sources,
        out,
        split=split,
        progress=progress,
        frame_prep=frame_prep,
        labels=labels,
        split_seed=split_seed,
        stop_alpha=stop_alpha,
        source_errors=(BagError,),
        desc="import bags",
    )


def _load_bag(bag: Path, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    result = load_episode_bag(bag, **kwargs)
    return result.episode, result.report.to_dict()
