"""Recorded episodes from any source (rosbag2 bags, LeRobot datasets) into one of our datasets.

Why one module: every source needs the same rules -- one bad recording must not abort importing
a hundred good ones (each failure is reported with its reason), labels give recorded shifts their
names, frames are resized the way the node will see them, and ``--split auto`` assigns splits by
episode, sizing calib for the default false-stop rate. The sources differ only in how one
episode is read, which is the ``load`` callable of an :class:`EpisodeSource`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from world_monitor.data.episode import Episode, EpisodeError
from world_monitor.data.labels import EpisodeLabel, LabelError, apply_label, label_for_keys

__all__ = ["AUTO_SPLIT_STOP_ALPHA", "EpisodeSource", "import_episodes"]

log = logging.getLogger(__name__)

#: default false-stop rate (``calibrate --stop-alpha``) whose certification ``--split auto``
#: sizes the calib split for
AUTO_SPLIT_STOP_ALPHA = 0.02


@dataclass(frozen=True)
class EpisodeSource:
    """One recording to import: the episode id it gets, the names a labels file may use for it
    (first match wins), and how to read it (returns the episode and a JSON-able report)."""

    episode_id: str
    label_keys: tuple[str, ...]
    load: Callable[[], tuple[Episode, dict[str, Any]]]
    name: str


def import_episodes(
    sources: Sequence[EpisodeSource],
    out: Path,
    *,
    split: str = "test",
    progress: bool = True,
    frame_prep: Any = None,
    labels: Mapping[str, EpisodeLabel] | None = None,
    split_seed: int = 0,
    stop_alpha: float = AUTO_SPLIT_STOP_ALPHA,
    source_errors: tuple[type[Exception], ...] = (),
    desc: str = "import",
) -> dict[str, Any]:
    """Import ``sources`` into the dataset ``out`` (created or extended), one episode each.

    A source whose ``load`` raises one of ``source_errors`` (or an episode, dataset or label
    error) is skipped and listed under ``errors`` with its reason; the index is rebuilt at the
    end. ``frame_prep`` (a :class:`~world_monitor.data.frame_prep.FramePrep`) resizes every frame
    and mask the way the node and replay will (train and calibrate on what the node sees).

    ``labels`` (:func:`~world_monitor.data.labels.load_labels`) give recorded episodes their
    shift, onset, severity and success; a label naming no given source is an error before
    anything is imported. ``split="auto"`` assigns the episodes imported by this call with
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
    matched = {
        lab.bag for src in sources if (lab := label_for_keys(labels, src.label_keys)) is not None
    }
    stray = sorted(set(labels) - matched)
    if stray:
        more = f" (+{len(stray) - 10})" if len(stray) > 10 else ""
        raise LabelError(f"labels for recordings that are not being imported: {stray[:10]}{more}")
    shifted = sorted(lab.bag for lab in labels.values() if lab.shift is not None)
    if shifted and split in ("train", "val", "calib"):
        raise LabelError(
            f"{len(shifted)} labelled recording(s) show a shift ({shifted[:5]}): shifted "
            f"episodes are held out, never filed under {split!r}; use --split test or --split auto"
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
    errors = (EpisodeError, DatasetError, LabelError, *source_errors)
    for src in tqdm(sources, desc=desc, unit="ep", disable=not progress):
        eid = src.episode_id
        if writer.exists(eid):
            summary["skipped"] += 1
            continue
        try:
            episode, report = src.load()
            if frame_prep is not None:
                from world_monitor.data.frame_prep import prepare_episode

                episode = prepare_episode(episode, frame_prep)
            label = label_for_keys(labels, src.label_keys)
            if label is not None:
                episode = apply_label(episode, label)
            elif labels:
                summary["unlabelled"].append(eid)
            writer.write(episode, episode_id=eid, split="test" if auto else split)
        except errors as exc:
            log.warning("%s: %s", src.name, exc)
            summary["failed"] += 1
            summary["errors"][src.name] = str(exc)
            continue
        summary["imported"] += 1
        summary["labelled"] += int(label is not None)
        summary["reports"][src.name] = report
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
    summary["splits"] = dict(
        sorted(Counter(str(writer.read_meta(e)["split"]) for e, _ in new).items())
    )
    writer.finalize()
    return summary
