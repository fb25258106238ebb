"""Read a rosbag2 bag (sqlite3 or MCAP) back into an :class:`Episode`.

Synchronisation (why and how): a robot records camera frames and the policy's action chunks on
separate topics. For each frame we take the chunk with the latest stamp ``<=`` the frame stamp
(stamps compared in integer nanoseconds, after subtracting ``chunk_delay`` from chunk stamps
for policies that stamp a chunk with its publication time instead of its input frame's). If that chunk is at most ``tolerance`` seconds older
than the frame (default: half the median frame interval), its *first point* is the frame's
action, and a chunk serves as first point for at most one frame. Frames without such a chunk are
"missing"; they are never silently invented:

* leading/trailing frames without a chunk (the policy starts after the camera, or the recording
  stops first) are dropped when ``trim_edges`` is true, and counted;
* interior missing frames follow ``on_missing``: ``"error"`` (default) raises :class:`BagError`
  listing them; ``"drop"`` removes those frames (the episode then has a time gap, stamps show
  it); ``"plan"`` takes point ``k = round(age * fps)`` of the last chunk when it has one (the
  action the chunking policy was executing open-loop), and errors otherwise.

All counts are in :class:`ImportReport`. Bags without our ``/world_monitor/episode_meta`` topic get
``EpisodeMeta(scenario="recorded", seed=0, fps=<1/median frame interval>, success=False,
policy="recorded", extra={"success_known": False, "source_bag": <path>, "image_topic": ...,
"action_topic": ...})`` -- ``success=False`` only because the field is a required bool: check
``extra["success_known"]`` before using it as a label.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.export import MASK_TOPIC, META_TOPIC
from world_monitor.data.bag.scan import (
    BagScan,
    open_reader,
    pick_topics,
    scan_bag,
    topic_table,
)
from world_monitor.data.episode import Episode, EpisodeError, EpisodeMeta

__all__ = ["BagImport", "ImportReport", "import_episode_bag", "load_episode_bag"]

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """How every message of the bag was used."""

    bag: str
    storage: str
    image_topic: str
    action_topic: str
    frames_in_bag: int
    frames_used: int
    chunks_in_bag: int
    chunks_used: int
    trimmed_frames: int = 0
    dropped_frames: list[int] = field(default_factory=list)
    planned_frames: list[int] = field(default_factory=list)
    unused_chunks: int = 0
    ignored_messages: dict[str, int] = field(default_factory=dict)
    has_meta: bool = False
    has_shift_mask: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BagImport:
    episode: Episode
    report: ImportReport


def _sync(
    frame_ns: np.ndarray,
    chunk_ns: np.ndarray,
    tol_ns: int,
    fps: float,
    chunks: list[np.ndarray],
    on_missing: str,
) -> tuple[list[np.ndarray | None], list[int], list[bool]]:
    """Per frame: the action (or None when missing), its chunk index (-1), planned flag."""
    actions: list[np.ndarray | None] = []
    src: list[int] = []
    planned: list[bool] = []
    used: set[int] = set()
    for f in frame_ns:
        j = int(np.searchsorted(chunk_ns, f, side="right")) - 1
        act, is_plan = None, False
        if j >= 0:
            age = int(f - chunk_ns[j])
            if age <= tol_ns and j not in used:
                act = chunks[j][0]
                used.add(j)
            elif on_missing == "plan":
                k = round(age * 1e-9 * fps)
                if 0 < k < chunks[j].shape[0]:
                    act, is_plan = chunks[j][k], True
        actions.append(act)
        src.append(j if act is not None else -1)
        planned.append(is_plan)
    return actions, src, planned


def load_episode_bag(
    path: str | Path,
    *,
    image_topic: str | None = None,
    action_topic: str | None = None,
    action_dim: int | None = None,
    tolerance: float | None = None,
    chunk_delay: float = 0.0,
    on_missing: Literal["error", "drop", "plan"] = "error",
    trim_edges: bool = True,
    distro: str = "jazzy",
    progress: bool = False,
    action_field: str = "positions",
) -> BagImport:
    """Read a bag into an Episode plus an :class:`ImportReport`; see the module docstring."""
    if on_missing not in ("error", "drop", "plan"):
        raise ValueError(f"on_missing {on_missing!r}: expected 'error', 'drop' or 'plan'")
    path = Path(path)
    reader = open_reader(path)
    try:
        table = topic_table(reader)
    except Exception as exc:  # noqa: BLE001 -- wrap any rosbags failure
        raise BagError(path, f"cannot list topics ({type(exc).__name__}: {exc})") from None
    finally:
        try:
            reader.close()
        except Exception:
            log.debug("closing %s failed", path, exc_info=True)
    img_t, act_t = pick_topics(path, table, image_topic, action_topic)
    roles = {img_t: "image", act_t: "actions"}
    if META_TOPIC in table:
        roles[META_TOPIC] = "meta"
    if MASK_TOPIC in table:
        roles[MASK_TOPIC] = "mask"
    scan = scan_bag(
        path,
        topics=roles,
        strict=True,
        action_dim=action_dim,
        distro=distro,
        progress=progress,
        action_field=action_field,
    )
    return _assemble(scan, img_t, act_t, tolerance, chunk_delay, on_missing, trim_edges)


def _assemble(
    scan: BagScan,
    img_t: str,
    act_t: str,
    tolerance: float | None,
    chunk_delay: float,
    on_missing: str,
    trim_edges: bool,
) -> BagImport:
    path = scan.path
    imgs, acts = scan.scans[img_t], scan.scans[act_t]
    if imgs.usable == 0:
        raise BagError(path, "no image messages", topic=img_t)
    if acts.usable == 0:
        raise BagError(path, "no action messages", topic=act_t)
    frame_ns = np.asarray(imgs.stamps_ns, dtype=np.int64)
    chunk_ns = np.asarray(acts.stamps_ns, dtype=np.int64) - round(chunk_delay * 1e9)
    meta_doc = (
        scan.scans[META_TOPIC].items[0]
        if META_TOPIC in scan.scans and scan.scans[META_TOPIC].items
        else None
    )
    try:
        fps = float(meta_doc["meta"].get("fps", 0.0)) if meta_doc is not None else 0.0
    except (TypeError, ValueError):
        fps = 0.0  # a bad fps is reported by EpisodeMeta validation below
    if not fps > 0:
        fps = 1e9 / float(np.median(np.diff(frame_ns))) if frame_ns.size > 1 else 1.0
    tol_ns = round((tolerance if tolerance is not None else 0.5 / fps) * 1e9)
    actions, _, planned = _sync(frame_ns, chunk_ns, tol_ns, fps, acts.items, on_missing)
    have = np.array([a is not None for a in actions])
    keep = np.ones(len(actions), dtype=bool)
    trimmed = 0
    if trim_edges and have.any():
        first, last = int(np.argmax(have)), len(have) - 1 - int(np.argmax(have[::-1]))
        keep[:first] = False
        keep[last + 1 :] = False
        trimmed = int((~keep).sum())
    missing = [i for i in range(len(actions)) if keep[i] and not have[i]]
    if not have.any():
        raise BagError(
            path,
            f"no frame has an action chunk within {tol_ns / 1e9:.3f} s before it (frames "
            f"{frame_ns[0]}..{frame_ns[-1]} ns, chunks {chunk_ns[0]}..{chunk_ns[-1]} ns); if the "
            "policy stamps chunks after their input frame, pass chunk_delay (seconds)",
            topic=act_t,
        )
    if missing and on_missing in ("error", "plan"):
        raise BagError(
            path,
            f"{len(missing)} frame(s) have no action chunk within {tol_ns / 1e9:.3f} s: frame "
            f"indices {missing[:10]}{' ...' if len(missing) > 10 else ''} (on_missing="
            f"'{on_missing}'; use 'drop' or 'plan' to accept)",
            topic=act_t,
        )
    keep &= have
    idx = np.flatnonzero(keep)
    frames = np.stack([imgs.items[i] for i in idx]).astype(np.uint8, copy=False)
    act_arr = np.stack([actions[i] for i in idx]).astype(np.float32)  # type: ignore[misc]
    stamps = frame_ns[idx].astype(np.float64) / 1e9
    report = ImportReport(
        bag=str(path),
        storage=scan.storage,
        image_topic=img_t,
        action_topic=act_t,
        frames_in_bag=len(frame_ns),
        frames_used=len(idx),
        chunks_in_bag=acts.count,
        chunks_used=0,
        trimmed_frames=trimmed,
        dropped_frames=missing,
        planned_frames=[int(i) for i in idx if planned[i]],
        ignored_messages=dict(scan.ignored),
    )
    meta, stamps = _meta(scan, meta_doc, report, frame_ns, idx, stamps, fps)
    mask = _mask(scan, frame_ns, idx, report)
    report.chunks_used = int(sum(1 for i in idx if not planned[i]))
    report.unused_chunks = acts.usable - report.chunks_used
    try:
        ep = Episode(frames, act_arr, stamps, meta, mask)
    except EpisodeError as exc:
        raise BagError(path, f"decoded episode is invalid: {exc}") from None
    log.info(
        "%s: %d/%d frames, %d chunks used, %d trimmed, %d dropped, %d from plan, ignored %s",
        path,
        report.frames_used,
        report.frames_in_bag,
        report.chunks_used,
        trimmed,
        len(missing) if on_missing == "drop" else 0,
        len(report.planned_frames),
        report.ignored_messages,
    )
    return BagImport(ep, report)


def _meta(
    scan: BagScan,
    doc: dict[str, Any] | None,
    report: ImportReport,
    frame_ns: np.ndarray,
    idx: np.ndarray,
    stamps: np.ndarray,
    fps: float,
) -> tuple[EpisodeMeta, np.ndarray]:
    if doc is None:
        meta = EpisodeMeta(
            scenario="recorded",
            seed=0,
            fps=fps,
            success=False,
            policy="recorded",
            extra={
                "success_known": False,
                "source_bag": str(scan.path),
                "image_topic": report.image_topic,
                "action_topic": report.action_topic,
            },
        )
        return meta, stamps
    report.has_meta = True
    try:
        meta = EpisodeMeta.from_dict(doc["meta"])
    except (EpisodeError, TypeError) as exc:
        raise BagError(
            scan.path, f"episode meta invalid: {exc}", topic=META_TOPIC, index=0
        ) from None
    exact = doc.get("stamps")
    if isinstance(exact, list) and len(exact) == len(frame_ns):
        exact_arr = np.asarray(exact, dtype=np.float64)
        if np.array_equal(np.round(exact_arr * 1e9).astype(np.int64), frame_ns):
            stamps = exact_arr[idx]
        else:
            log.warning(
                "%s: meta stamps disagree with image stamps; using image stamps",
                scan.path,
            )
    if len(idx) != len(frame_ns):
        # frames were dropped: indices in meta no longer refer to the same frames
        meta.extra = {
            **meta.extra,
            "frames_dropped_on_import": int(len(frame_ns) - len(idx)),
        }
        for name in ("failure_step", "shift_onset"):
            v = getattr(meta, name)
            if v is not None:
                setattr(meta, name, int(np.searchsorted(idx, v)) if v <= idx[-1] else None)
    return meta, stamps


def _mask(
    scan: BagScan, frame_ns: np.ndarray, idx: np.ndarray, report: ImportReport
) -> np.ndarray | None:
    ts = scan.scans.get(MASK_TOPIC)
    if ts is None or not ts.items:
        return None
    by_stamp = dict(zip(ts.stamps_ns, ts.items, strict=True))
    missing = [int(i) for i in idx if int(frame_ns[i]) not in by_stamp]
    if missing:
        raise BagError(
            scan.path,
            f"no shift mask stamped like frames {missing[:10]}",
            topic=MASK_TOPIC,
        )
    mask = np.stack([by_stamp[int(frame_ns[i])] for i in idx])
    if mask.shape[1:] != scan.scans[report.image_topic].image_shape:
        raise BagError(
            scan.path,
            f"shift mask size {list(mask.shape[1:])} != image size "
            f"{list(scan.scans[report.image_topic].image_shape or ())}",
            topic=MASK_TOPIC,
        )
    report.has_shift_mask = True
    return mask


def import_episode_bag(
    path: str | Path,
    *,
    image_topic: str | None = None,
    action_topic: str | None = None,
    **kwargs: Any,
) -> Episode:
    """Read a bag into an Episode (see :func:`load_episode_bag` for options and the report)."""
    return load_episode_bag(
        path, image_topic=image_topic, action_topic=action_topic, **kwargs
    ).episode
