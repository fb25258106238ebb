"""Dataset <-> bag conversion of many episodes at once (the CLI's export-bag / import-bag).

Why here: both directions need the same per-episode error policy -- one bad bag must not abort
importing a hundred good ones, and every failure is reported by bag with its reason.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.export import export_episode_bag
from world_monitor.data.bag.importer import load_episode_bag
from world_monitor.data.bag.labels import EpisodeLabel, LabelError, apply_label, label_for
from world_monitor.data.episode import EpisodeError

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


#: default false-stop rate (``calibrate --stop-alpha``) whose certification ``--split auto``
#: sizes the calib split for
AUTO_SPLIT_STOP_ALPHA = 0.02


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

    The episode id is the bag's directory (or file stem) name, made filesystem-safe. A bag that
    fails is skipped and listed under ``errors`` with its reason; the index is rebuilt at the
    end. Keyword arguments go to :func:`load_episode_bag` (topics, tolerance, on_missing,
    action_field, ...). ``frame_prep`` (a :class:`~world_monitor.data.frame_prep.FramePrep`)
    resizes every frame and mask the way the node and replay will (train and calibrate on what
    the node sees).

    ``labels`` (:func:`~world_monitor.data.bag.labels.load_labels`) give recorded episodes their
    shift, onset, severity and success; a label naming no given bag is an error before anything
    is imported. ``split="auto"`` assigns the episodes imported by this call with
    :func:`~world_monitor.data.dataset.assign_splits` (seeded by ``split_seed``, by episode,
    default fractions 70/10/10/10 %; shifted episodes to test) and sizes calib for
    ``stop_alpha`` when the data allow it (:func:`~world_monitor.data.dataset.split_counts`).
    A shifted episode is never filed under train, val or calib.

    Returns ``{"imported", "skipped", "failed", "errors", "reports", "dataset", "splits",
    "labelled", "unlabelled"}``.
    """
    from world_monitor.data.dataset import SPLITS, DatasetError, DatasetWriter, assign_splits

    auto = split == "auto"
    if not auto and split not in SPLITS:
        raise ValueError(f"split {split!r}: expected auto or one of {', '.join(SPLITS)}")
    labels = dict(labels or {})
    bags = [Path(b) for b in bags]
    ids: dict[Path, str] = {}
    taken: set[str] = set()
    for bag in bags:
        ids[bag] = _episode_id(bag, taken)
    matched = {lab.bag for bag in bags if (lab := label_for(labels, bag, ids[bag])) is not None}
    stray = sorted(set(labels) - matched)
    if stray:
        more = f" (+{len(stray) - 10})" if len(stray) > 10 else ""
        raise LabelError(f"labels for bags that are not being imported: {stray[:10]}{more}")
    shifted = sorted(lab.bag for lab in labels.values() if lab.shift is not None)
    if shifted and split in ("train", "val", "calib"):
        raise LabelError(
            f"{len(shifted)} labelled bag(s) show a shift ({shifted[:5]}): shifted episodes are "
            f"held out, never filed under {split!r}; use --split test or --split auto"
        )
    writer = DatasetWriter(out)
    summary: dict[str, Any] = {
        "dataset": str(out),
        "imported": 0,
        "skipped": 0,
        "failed": 0,
        "errors": {},
        "reports": {},
        "labelled": 0,
        "unlabelled": [],
    }
    new: list[tuple[str, str | None]] = []
    for bag in tqdm(bags, desc="import bags", unit="bag", disable=not progress):
        eid = ids[bag]
        if writer.exists(eid):
            summary["skipped"] += 1
            continue
        try:
            result = load_episode_bag(bag, **kwargs)
            episode = result.episode
            if frame_prep is not None:
                from world_monitor.data.frame_prep import prepare_episode

                episode = prepare_episode(episode, frame_prep)
            label = label_for(labels, bag, eid)
            if label is not None:
                episode = apply_label(episode, label)
            elif labels:
                summary["unlabelled"].append(eid)
            writer.write(episode, episode_id=eid, split="test" if auto else split)
        except (BagError, EpisodeError, DatasetError, LabelError) as exc:
            log.warning("%s: %s", bag, exc)
            summary["failed"] += 1
            summary["errors"][str(bag)] = str(exc)
            continue
        summary["imported"] += 1
        summary["labelled"] += int(label is not None)
        summary["reports"][str(bag)] = result.report.to_dict()
        new.append((eid, episode.meta.shift))
    if auto and new:
        from world_monitor.runtime.calibrate import episodes_needed

        min_calib = 2 * episodes_needed(stop_alpha)  # calibrate halves the calib split
        plan = assign_splits(
            [e for e, _ in new], shifts=[sh for _, sh in new], seed=split_seed, min_calib=min_calib
        )
        for eid, name in plan.items():
            writer.set_split(eid, name)
        n_calib = sum(1 for v in plan.values() if v == "calib")
        if n_calib < min_calib:
            log.warning(
                "--split auto: %d calib episodes; a false-stop rate of %g needs %d (calibrate "
                "will name the smallest rate these certify)",
                n_calib,
                stop_alpha,
                min_calib,
            )
    summary["splits"] = dict(sorted(Counter(_split_of(writer, e) for e, _ in new).items()))
    writer.finalize()
    return summary


def _split_of(writer: Any, episode_id: str) -> str:
    return str(writer.read_meta(episode_id)["split"])
