"""Does this recording fit this bundle? Checked on the first messages, before any replay work.

Why: a bag from another robot replayed with the wrong bundle used to run to the end, exit 0 and
print only output paths, with every chunk rejected ``wrong_dim`` and the lock closed throughout:
visible only inside ``summary.json``. A mismatch between what the bundle was trained on and what
the recording carries (action dimension, chunk length, camera rate, an image the node cannot
decode) is a configuration error, so it is one line naming every difference, raised before the
monitor sees a message. Individually bad messages are *not* a mismatch: they are replayed,
rejected and counted as usual. The check therefore only speaks when every decodable message of
the sample disagrees with the bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.scan import open_reader
from world_monitor.ros.convert import stamp_of

logger = logging.getLogger(__name__)

__all__ = ["BundleMismatch", "check_bag_fits_monitor"]

SAMPLE_CHUNKS = 8
SAMPLE_FRAMES = 12


class BundleMismatch(BagError):
    """The recording and the bundle disagree (action dim, horizon, camera rate, image)."""


def check_bag_fits_monitor(
    path: Path,
    img_topic: str,
    act_topic: str,
    monitor: Any,
    *,
    decode_image: Callable[[Any, str], np.ndarray],
    decode_chunk: Callable[[Any, str, float], tuple[np.ndarray, float]],
    deserialize: Callable[[bytes, str], Any],
    period_tolerance: float = 0.5,
    what: str = "bundle",
    reader: Any = None,
) -> None:
    """Decode up to ``SAMPLE_CHUNKS`` chunks and ``SAMPLE_FRAMES`` frames from the start of the
    bag and compare them with ``monitor``; raise :class:`BundleMismatch` listing every problem.

    ``decode_image(msg, msgtype) -> rgb`` and ``decode_chunk(msg, msgtype, log_s) -> (points,
    stamp)`` are the replay's own converters (the same action field, the same image decoding),
    without the bundle's action dimension so a wrong one is *measured* rather than rejected.
    A bag that cannot be read is left to the replay loop, which reports corruption message by
    message. ``reader``: an open reader of ``path`` to use (left open; replay passes its own,
    which saves parsing the metadata twice -- measured ~20 ms of a ~0.25 s replay of a 5 s bag).
    """
    chunks: list[np.ndarray] = []
    frame_stamps: list[float] = []
    frames_bad = chunks_bad = 0
    frame_error = chunk_error = ""
    own = reader is None
    if own:
        reader = open_reader(path)
    try:
        conns = [c for c in reader.connections if c.topic in (img_topic, act_topic)]
        for conn, log_ns, raw in reader.messages(connections=conns):
            chunks_seen = len(chunks) + chunks_bad
            if chunks_seen >= SAMPLE_CHUNKS and len(frame_stamps) + frames_bad >= SAMPLE_FRAMES:
                break
            try:
                msg = deserialize(raw, conn.msgtype)
                if conn.topic == act_topic and chunks_seen < SAMPLE_CHUNKS:
                    try:
                        chunks.append(decode_chunk(msg, conn.msgtype, log_ns * 1e-9)[0])
                    except Exception as exc:  # noqa: BLE001 -- only "all bad" is a mismatch
                        chunks_bad += 1
                        chunk_error = chunk_error or _describe(exc)
                elif conn.topic == img_topic and len(frame_stamps) + frames_bad < SAMPLE_FRAMES:
                    try:
                        decode_image(msg, conn.msgtype)
                    except Exception as exc:  # noqa: BLE001 -- only "all bad" is a mismatch
                        frames_bad += 1
                        frame_error = frame_error or _describe(exc)
                        continue
                    stamp = stamp_of(msg)
                    frame_stamps.append(log_ns * 1e-9 if stamp is None else stamp)
            except Exception:  # noqa: BLE001 -- a bad message is the replay's to count
                continue
    except Exception as exc:  # noqa: BLE001 -- corrupt storage: the replay loop reports it
        logger.debug("fit check of %s stopped early: %s", path, exc)
    finally:
        try:
            if own:
                reader.close()
        except Exception:  # noqa: BLE001
            logger.debug("closing %s failed", path, exc_info=True)
    problems = _problems(chunks, frame_stamps, frames_bad, frame_error, monitor, period_tolerance)
    if chunks_bad and not chunks:
        problems.insert(0, f"none of the first {chunks_bad} action chunks decodes ({chunk_error})")
    if problems:
        raise BundleMismatch(
            path,
            f"does not fit the {what}: {'; '.join(problems)} (checked the first "
            f"{len(chunks) + chunks_bad} chunks and {len(frame_stamps) + frames_bad} frames)",
        )


def _describe(exc: Exception) -> str:
    """``kind: detail`` of a ConversionError (duck-typed), else the exception's text."""
    kind, detail = getattr(exc, "kind", None), getattr(exc, "detail", None)
    return f"{kind}: {detail}" if kind and detail else f"{type(exc).__name__}: {exc}"


def _problems(
    chunks: list[np.ndarray],
    frame_stamps: list[float],
    frames_bad: int,
    frame_error: str,
    monitor: Any,
    tolerance: float,
) -> list[str]:
    out: list[str] = []
    dim, horizon = int(monitor.action_dim), int(monitor.horizon)
    if chunks:
        dims = sorted({int(c.shape[1]) for c in chunks if c.ndim == 2})
        if dims and dim not in dims:
            out.append(f"action dim {'/'.join(map(str, dims))} (the bundle's: {dim})")
        lengths = sorted({int(c.shape[0]) for c in chunks if c.ndim == 2})
        if lengths and horizon not in lengths:
            out.append(
                f"chunks of {'/'.join(map(str, lengths))} points (the bundle's horizon: {horizon})"
            )
    if frames_bad and not frame_stamps:
        out.append(f"none of the first {frames_bad} camera frames decodes ({frame_error})")
    period = getattr(monitor, "frame_period_s", None)
    if period and len(frame_stamps) >= 3:
        spacing = float(np.median(np.diff(np.asarray(frame_stamps))))
        if spacing > (1.0 + tolerance) * float(period):
            out.append(
                f"camera at {1.0 / spacing:.3g} Hz, slower than the bundle's "
                f"{1.0 / float(period):.3g} Hz -{tolerance:.0%} (every context would be a gap)"
            )
    return out
