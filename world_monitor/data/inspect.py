"""Inspect a dataset directory or a rosbag2 bag: what is in it and what would be rejected.

Why: before training on, or replaying, a recording, an engineer needs to see in one screen which
topics exist, their rates, image and action shapes, and -- crucially -- how many messages the
importer would reject and why. The bag report comes from the same decoding pass as the
importer (``scan_bag`` in lenient mode), so every message is accounted for: usable on a decoded
topic, rejected with a reason, or on an ignored (unrelated) topic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.scan import scan_bag

__all__ = ["format_report", "inspect_path", "strict_problems"]


def _is_dataset(p: Path) -> bool:
    return p.is_dir() and (p / "dataset.json").exists()


def _is_bag(p: Path) -> bool:
    return (p.is_dir() and (p / "metadata.yaml").exists()) or p.suffix in (
        ".mcap",
        ".db3",
    )


def inspect_path(
    path: str | Path, *, progress: bool = False, action_field: str = "positions"
) -> dict[str, Any]:
    """Summary dict of a dataset directory (``kind="dataset"``) or a bag (``kind="bag"``);
    ``action_field`` is the JointTrajectoryPoint array read as the chunk.

    Raises :class:`~world_monitor.data.dataset.DatasetError` / :class:`BagError` only when the
    input cannot be opened at all; a bag that breaks off part-way is reported with
    ``read_error`` and the messages read until then.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: does not exist")
    if _is_dataset(p):
        from world_monitor.data.dataset import EpisodeDataset

        return {"kind": "dataset", "rejected_total": 0, **EpisodeDataset(p).summary()}
    if _is_bag(p):
        return _inspect_bag(p, progress, action_field)
    raise BagError(p, "neither a dataset directory (dataset.json) nor a rosbag2 bag")


def _inspect_bag(p: Path, progress: bool, action_field: str = "positions") -> dict[str, Any]:
    scan = scan_bag(
        p,
        topics=None,
        strict=False,
        keep_data=False,
        progress=progress,
        action_field=action_field,
    )
    topics: dict[str, Any] = {}
    for name, (msgtype, count) in sorted(scan.topics.items()):
        entry: dict[str, Any] = {"type": msgtype, "messages": count}
        ts = scan.scans.get(name)
        if ts is not None:
            entry.update(ts.summary())
            stamps = np.asarray(ts.log_ns, dtype=np.int64)
        else:
            entry.update({"role": "ignored", "ignored": int(scan.ignored.get(name, 0))})
            stamps = np.zeros(0, np.int64)
        if stamps.size > 1:
            dur = (stamps.max() - stamps.min()) / 1e9
            entry["duration_s"] = float(dur)
            entry["rate_hz"] = float((stamps.size - 1) / dur) if dur > 0 else None
        entry.pop("topic", None)
        topics[name] = entry
    read = scan.messages_read
    decoded = sum(ts.count for ts in scan.scans.values())
    usable = sum(ts.usable for ts in scan.scans.values())
    rejected = sum(sum(ts.rejected.values()) for ts in scan.scans.values())
    ignored = sum(scan.ignored.values())
    all_log = [t for ts in scan.scans.values() for t in ts.log_ns]
    in_metadata = sum(n for _, n in scan.topics.values())
    return {
        "kind": "bag",
        "path": str(p),
        "storage": scan.storage,
        "messages_in_metadata": in_metadata,
        "messages_read": read,
        "usable": usable,
        "rejected": rejected,
        "rejected_total": rejected,
        "ignored": ignored,
        # every message the metadata promises was read and landed in exactly one bucket; a
        # bag that breaks off (read_error, or fewer read than promised) is not accounted
        "accounted": usable + rejected + ignored == read
        and decoded + ignored == read
        and read == in_metadata
        and scan.read_error is None,
        "duration_s": (max(all_log) - min(all_log)) / 1e9 if len(all_log) > 1 else 0.0,
        "read_error": scan.read_error,
        "integrity": scan.integrity.to_dict(),
        "topics": topics,
    }


def strict_problems(report: dict[str, Any]) -> list[str]:
    """Why ``inspect --strict`` fails on ``report`` (empty: it passes).

    Strict means every message the bag promises was read, decoded and usable: a read error,
    fewer messages read than the metadata lists, an unaccounted message, a corrupt chunk or any
    rejection is a failure. Why: "0 of 49 messages read" used to pass because nothing was
    *rejected* -- an unreadable bag is worse than a rejected message, not better.
    """
    if report.get("kind") != "bag":
        return []
    out = []
    if report.get("read_error"):
        out.append(f"read error: {report['read_error']}")
    read, promised = report.get("messages_read", 0), report.get("messages_in_metadata", 0)
    if read != promised:
        out.append(f"read {read} of {promised} messages")
    elif not report.get("accounted", False):
        out.append("messages unaccounted")
    corrupt = (report.get("integrity") or {}).get("corrupt_chunks", 0)
    if corrupt:
        out.append(f"{corrupt} corrupt chunk(s)")
    reasons: dict[str, int] = {}
    for t in report.get("topics", {}).values():
        for reason, n in (t.get("rejected") or {}).items():
            reasons[reason] = reasons.get(reason, 0) + int(n)
    if reasons:
        parts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        out.append(f"{sum(reasons.values())} rejected ({parts})")
    return out


def format_report(report: dict[str, Any]) -> str:
    """Human-readable text of :func:`inspect_path`'s dict."""
    if report.get("kind") == "dataset":
        lines = [
            f"dataset {report['root']}",
            f"  episodes {report['episodes']}, frames {report['frames']}, success rate "
            + ("n/a" if report["success_rate"] is None else f"{report['success_rate']:.1%}"),
            (
                f"  image sizes {report['image_sizes']}, action dims {report['action_dims']}, "
                f"with shift mask {report['with_shift_mask']}"
            ),
        ]
        for split, shifts in sorted(report["per_split_shift"].items()):
            parts = ", ".join(f"{k}: {v}" for k, v in sorted(shifts.items()))
            lines.append(f"  {split:6s} {parts}")
        lines.append(
            "  scenarios: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(report["per_scenario"].items()))
        )
        return "\n".join(lines)
    lines = [
        f"bag {report['path']} ({report['storage']}), {report['duration_s']:.2f} s",
        (
            f"  messages: {report['messages_read']} read of {report['messages_in_metadata']}; "
            f"usable {report['usable']}, rejected {report['rejected']}, ignored {report['ignored']}"
        ),
    ]
    if report.get("read_error"):
        lines.append(f"  READ ERROR: {report['read_error']}")
    integ = report.get("integrity") or {}
    if integ.get("corrupt_chunks"):
        lines.append(f"  CORRUPT: {integ['corrupt_chunks']} MCAP chunk(s) failed their checks")
    if integ.get("unchecked_chunks"):
        lines.append(
            f"  note: {integ['unchecked_chunks']} chunk(s) without CRC (corruption there is "
            "undetectable)"
        )
    for name, t in report["topics"].items():
        rate = t.get("rate_hz")
        head = f"  {name} [{t['type']}] {t['messages']} msgs"
        head += f", {rate:.2f} Hz" if rate else ""
        head += f", role {t.get('role')}"
        lines.append(head)
        if t.get("image_size"):
            lines.append(
                f"      image {t['image_size'][0]}x{t['image_size'][1]} {t.get('encoding')}"
            )
        if t.get("action_dim") is not None:
            lines.append(f"      action dim {t['action_dim']}, horizon {t.get('horizon')}")
        for reason, n in sorted(t.get("rejected", {}).items()):
            example = t.get("rejection_examples", {}).get(reason, "")
            lines.append(f"      rejected {n} x {reason}  (e.g. {example})")
    return "\n".join(lines)
