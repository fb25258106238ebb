"""Dataset <-> bag conversion of many episodes at once (the CLI's export-bag / import-bag).

Why here: both directions need the same per-episode error policy -- one bad bag must not abort
importing a hundred good ones, and every failure is reported by bag with its reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.export import export_episode_bag
from world_monitor.data.bag.importer import load_episode_bag
from world_monitor.data.episode import EpisodeError

__all__ = ["export_path", "import_paths"]

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
    **kwargs: Any,
) -> dict[str, Any]:
    """Import bags into the dataset ``out`` (created or extended), one episode per bag.

    The episode id is the bag's directory (or file stem) name, made filesystem-safe. A bag that
    fails is skipped and listed under ``errors`` with its reason; the index is rebuilt at the
    end. Keyword arguments go to :func:`load_episode_bag` (topics, tolerance, on_missing, ...).
    ``frame_prep`` (a :class:`~world_monitor.data.frame_prep.FramePrep`) resizes every frame
    and mask the way the node and replay will (train and calibrate on what the node sees).
    Returns ``{"imported", "skipped", "failed", "errors", "reports", "dataset"}``.
    """
    from world_monitor.data.dataset import DatasetError, DatasetWriter

    writer = DatasetWriter(out)
    taken: set[str] = set()
    summary: dict[str, Any] = {
        "dataset": str(out),
        "imported": 0,
        "skipped": 0,
        "failed": 0,
        "errors": {},
        "reports": {},
    }
    for bag in tqdm(list(bags), desc="import bags", unit="bag", disable=not progress):
        eid = _episode_id(Path(bag), taken)
        if writer.exists(eid):
            summary["skipped"] += 1
            continue
        try:
            result = load_episode_bag(bag, **kwargs)
            episode = result.episode
            if frame_prep is not None:
                from world_monitor.data.frame_prep import prepare_episode

                episode = prepare_episode(episode, frame_prep)
            writer.write(episode, episode_id=eid, split=split)
        except (BagError, EpisodeError, DatasetError) as exc:
            log.warning("%s", exc)
            summary["failed"] += 1
            summary["errors"][str(bag)] = str(exc)
            continue
        summary["imported"] += 1
        summary["reports"][str(bag)] = result.report.to_dict()
    writer.finalize()
    return summary
