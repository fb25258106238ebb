"""ROS message <-> numpy conversion for the few message types world_monitor exchanges.

Why separate: export, import and inspection must agree byte-for-byte on how an image or an action
chunk is encoded, and the same decoders serve the ROS node later. Decoders raise
:class:`Rejected` with a short machine-readable ``reason`` key (counted by ``inspect``) and a
human detail; the caller turns it into a :class:`BagError` naming bag, topic and message.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from world_monitor.data.dataset import json_default

__all__ = [
    "ACTION_TYPES",
    "COMPRESSED",
    "FLOAT_ARRAY",
    "IMAGE",
    "IMAGE_TYPES",
    "MAX_IMAGE_PIXELS",
    "META_FORMAT",
    "STRING",
    "TRAJECTORY",
    "Chunk",
    "Rejected",
    "ACTION_FIELDS",
    "check_action_field",
    "decode_chunk",
    "decode_compressed_image",
    "decode_image",
    "decode_mask",
    "decode_meta",
    "get_store",
    "ns_to_time",
    "time_to_ns",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
FLOAT_ARRAY = "std_msgs/msg/Float32MultiArray"
STRING = "std_msgs/msg/String"
IMAGE_TYPES = (IMAGE, COMPRESSED)
ACTION_TYPES = (TRAJECTORY, FLOAT_ARRAY)
META_FORMAT = "world_monitor.episode_meta"
#: largest frame (height x width) any decoder accepts, checked *before* decoding: 4096 x 4096
#: = 16.7 Mpx passes every real camera up to 4K (3840 x 2160 = 8.3 Mpx) with room, while a
#: 9000 x 9000 PNG (a few KB compressed, 243 MB decoded, seconds of CPU) is refused from its
#: header (in inspect, import, replay and the live node alike). Callers may pass a lower
#: ``max_pixels``.
MAX_IMAGE_PIXELS = 4096 * 4096
#: CompressedImage formats decoded (what image_transport's compressed plugin produces). Other
#: formats PIL could open (TIFF, BMP, ICO, EPS via Ghostscript ...) only widen the attack surface.
COMPRESSED_FORMATS = ("PNG", "JPEG")

_STORES = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
# encoding -> (channels, channel order to get RGB)
_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}


class Rejected(Exception):
    """One message cannot be used; ``reason`` is a stable key, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@lru_cache(maxsize=4)
def get_store(distro: str = "jazzy") -> Typestore:
    """The rosbags typestore of a ROS 2 distro ('humble' or 'jazzy'); standard msgs are equal."""
    try:
        return get_typestore(_STORES[distro])
    except KeyError:
        raise ValueError(f"distro {distro!r}: expected one of {sorted(_STORES)}") from None


def time_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_time(store: Typestore, ns: int) -> Any:
    time_cls = store.types["builtin_interfaces/msg/Time"]
    return time_cls(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def seconds_to_ns(seconds: float) -> int:
    return round(float(seconds) * 1e9)


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------


def _check_budget(h: int, w: int, max_pixels: int | None) -> None:
    budget = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    if h * w > budget:
        raise Rejected(
            "too_large",
            f"image is {h}x{w} = {h * w / 1e6:.1f} Mpx, over the {budget / 1e6:.1f} Mpx budget",
        )


def _image_array(
    msg: Any,
    allowed: dict[str, tuple[int, tuple[int, ...]]],
    max_pixels: int | None = None,
) -> tuple[np.ndarray, tuple[int, ...]]:
    enc = str(msg.encoding).lower()
    if enc not in allowed:
        raise Rejected("bad_encoding", f"encoding {msg.encoding!r} not in {sorted(allowed)}")
    ch, order = allowed[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise Rejected("bad_size", f"image is {h}x{w}")
    _check_budget(h, w, max_pixels)
    if step < w * ch:
        raise Rejected("bad_size", f"step {step} < width {w} x {ch} channels")
    data = np.asarray(msg.data, dtype=np.uint8)
    # sensor_msgs/Image: len(data) == step * height exactly; anything else means the header
    # and the payload disagree (a truncated or spliced message), so neither can be trusted
    if data.size != step * h:
        raise Rejected("bad_size", f"{data.size} data bytes != step {step} x height {h}")
    rows = data[: step * h].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    return rows, order


def decode_image(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> uint8 [H, W, 3] RGB.

    Rejected: unknown encoding, a size that disagrees with ``len(data)`` / ``step``, more than
    ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`) pixels.
    """
    rows, order = _image_array(msg, _ENCODINGS, max_pixels)
    return np.ascontiguousarray(rows[:, :, list(order)])


def decode_mask(msg: Any) -> np.ndarray:
    """mono8 sensor_msgs/Image -> bool [H, W] (non-zero = shifted pixel)."""
    rows, _ = _image_array(msg, {"mono8": _ENCODINGS["mono8"]})
    return rows[:, :, 0] > 0


def decode_compressed_image(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (png or jpeg) -> uint8 [H, W, 3].

    The header is read first (``Image.open`` parses it without decoding pixels) and a frame
    over ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`) is rejected as ``too_large`` before
    any pixel is decoded: a small PNG can claim a huge canvas (a decompression bomb). PIL's own
    bomb check (warning and error) is turned into the same rejection. Anything but PNG/JPEG is
    ``bad_encoding``; undecodable data is ``undecodable``. Never raises anything but
    :class:`Rejected`.
    """
    import warnings

    from PIL import Image as PILImage

    try:
        raw = np.asarray(msg.data, dtype=np.uint8).tobytes()
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            try:
                im_ctx = PILImage.open(io.BytesIO(raw), formats=COMPRESSED_FORMATS)
            except PILImage.UnidentifiedImageError:
                fmt = _sniff(raw)
                if fmt is not None:
                    raise Rejected(
                        "bad_encoding", f"format {msg.format!r}: {fmt} data, expected PNG/JPEG"
                    ) from None
                raise
            with im_ctx as im:
                w, h = im.size
                _check_budget(int(h), int(w), max_pixels)
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Rejected:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise Rejected("too_large", f"format {msg.format!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- PIL raises many types on garbage input
        raise Rejected(
            "undecodable", f"format {msg.format!r}: {type(exc).__name__}: {exc}"
        ) from None


#: magic bytes of image formats PIL could open but we refuse (for a precise rejection key)
_OTHER_FORMATS = (
    (b"BM", "BMP"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"RIFF", "RIFF/WEBP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"qoif", "QOI"),
    (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
)


def _sniff(raw: bytes) -> str | None:
    """The name of a refused image format whose magic bytes ``raw`` starts with (no parsing)."""
    return next((name for magic, name in _OTHER_FORMATS if raw.startswith(magic)), None)


def encode_compressed(rgb: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """uint8 [H, W, 3] -> png/jpeg bytes (PIL)."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    im = PILImage.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    if fmt == "png":
        im.save(buf, format="PNG")
    elif fmt in ("jpeg", "jpg"):
        im.save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"compressed format {fmt!r}: expected 'png' or 'jpeg'")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# action chunks
# ----------------------------------------------------------------------------------------------


@dataclass
class Chunk:
    """A planned action chunk: ``points float32 [H, A]``; ``stamp_ns`` from header or log time."""

    stamp_ns: int
    points: np.ndarray
    stamp_source: str  # "header" or "log_time"


def _check_points(points: np.ndarray, action_dim: int | None) -> np.ndarray:
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise Rejected("empty_chunk", f"chunk has shape {list(points.shape)}")
    if action_dim is not None and points.shape[1] != action_dim:
        raise Rejected("wrong_dim", f"action dim {points.shape[1]}, expected {action_dim}")
    if not np.isfinite(points).all():
        step = int(np.argwhere(~np.isfinite(points))[0, 0])
        raise Rejected("non_finite", f"NaN/Inf in chunk point {step}")
    return points


ACTION_FIELDS = ("positions", "velocities", "accelerations", "effort")


def check_action_field(field: str) -> str:
    """``field`` if it is a JointTrajectoryPoint array, else ValueError naming the choices."""
    if field not in ACTION_FIELDS:
        raise ValueError(f"action field {field!r}: expected one of {', '.join(ACTION_FIELDS)}")
    return field


def decode_chunk(
    msg: Any,
    msgtype: str,
    log_ns: int,
    action_dim: int | None,
    field: str = "positions",
) -> Chunk:
    """JointTrajectory or Float32MultiArray -> :class:`Chunk`.

    JointTrajectory: one point per future step, values in ``field`` of every point
    (``positions`` by default; ``velocities``, ``accelerations`` or ``effort`` for a policy that
    commands joint velocities or torques, e.g. a torque-driven arm); the header stamp is the
    chunk's stamp (log time when the header stamp is zero). Float32MultiArray has no header, so
    its stamp is the bag log time; layout ``dim`` must be [H, A] (or a single dim / no dims,
    read as one action of that length, or as [-1, action_dim] when ``action_dim`` is known).
    """
    if msgtype == TRAJECTORY:
        stamp = time_to_ns(msg.header.stamp)
        source = "header"
        if stamp == 0:
            stamp, source = log_ns, "log_time"
        if not msg.points:
            raise Rejected("empty_chunk", "JointTrajectory without points")
        lengths = [len(getattr(p, field)) for p in msg.points]
        if len(set(lengths)) > 1:
            raise Rejected("ragged_chunk", f"points have {lengths} {field}")
        if lengths[0] == 0 or (msg.joint_names and len(msg.joint_names) != lengths[0]):
            names = f"{len(msg.joint_names)} joint_names but " if msg.joint_names else ""
            raise Rejected(
                "ragged_chunk", f"{names}{lengths[0]} {field}{_other_fields(msg.points[0], field)}"
            )
        pts = np.array([np.asarray(getattr(p, field), dtype=np.float64) for p in msg.points])
        return Chunk(stamp, _check_points(pts.astype(np.float32), action_dim), source)
    if msgtype == FLOAT_ARRAY:
        data = np.asarray(msg.data, dtype=np.float32)
        dims = list(msg.layout.dim)
        off = int(msg.layout.data_offset)
        if len(dims) == 2:
            h, a = int(dims[0].size), int(dims[1].size)
            if off + h * a > data.size:
                raise Rejected(
                    "bad_layout",
                    f"layout [{h}, {a}] + offset {off} exceeds {data.size} values",
                )
            pts = data[off : off + h * a].reshape(h, a)
        elif len(dims) <= 1:
            flat = data[off:]
            if action_dim is not None and len(dims) == 0:
                if flat.size % action_dim:
                    raise Rejected(
                        "wrong_dim",
                        f"{flat.size} values not a multiple of action dim {action_dim}",
                    )
                pts = flat.reshape(-1, action_dim)
            else:
                pts = flat.reshape(1, -1)
        else:
            raise Rejected("bad_layout", f"layout has {len(dims)} dims, expected [H, A]")
        return Chunk(log_ns, _check_points(pts.copy(), action_dim), "log_time")
    raise Rejected("bad_type", f"{msgtype} is not an action chunk type")


def _other_fields(point: Any, field: str) -> str:
    """A hint naming the point arrays that do carry values (the usual cause of a 0-length one)."""
    full = [
        f"{len(getattr(point, f))} {f}"
        for f in ACTION_FIELDS
        if f != field and len(getattr(point, f))
    ]
    if not full:
        return ""
    return f"; the points carry {', '.join(full)}: choose the field with --action-field (node: action_field)"


# ----------------------------------------------------------------------------------------------
# episode metadata
# ----------------------------------------------------------------------------------------------


def encode_meta(meta: dict[str, Any], stamps: np.ndarray, extra: dict[str, Any]) -> str:
    """JSON payload of the meta topic: EpisodeMeta fields plus the exact float64 stamps.

    The float stamps are carried because header stamps are integer nanoseconds, and
    ``round(t * 1e9) / 1e9`` does not always give back the same float (0.30000000000000004).
    Python's JSON float repr round-trips float64 exactly.
    """
    doc = {
        "format": META_FORMAT,
        "version": 1,
        "meta": meta,
        "stamps": stamps.tolist(),
        **extra,
    }
    return json.dumps(doc, allow_nan=False, default=json_default)


def decode_meta(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected("bad_meta", f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != META_FORMAT or doc.get("version") != 1:
        raise Rejected("bad_meta", f"not a version-1 {META_FORMAT} document")
    if not isinstance(doc.get("meta"), dict):
        raise Rejected("bad_meta", "field 'meta' missing")
    return doc
