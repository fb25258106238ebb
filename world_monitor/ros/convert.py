"""ROS message <-> numpy for the node and offline replay, without importing rclpy.

Why duck typing: the node receives rclpy messages, replay reads ``rosbags`` messages; both have
the same field names, so one set of functions (tested here with ``rosbags`` classes, no ROS
needed) serves both. Decoding reuses :mod:`world_monitor.data.bag.codec` so a bag that imports
cleanly is decoded exactly like the live stream. Construction goes through a
:class:`MsgFactory` because the two worlds differ in three details:

* message classes: ``rosbags`` typestore classes (every field required) vs the generated rclpy
  classes (imported lazily in :func:`rclpy_factory`);
* ``uint8[]`` payloads: numpy arrays for rosbags, ``array.array('B')`` for rclpy (assigning a
  numpy array or bytes to an rclpy message makes it validate element by element: slow);
* ``byte`` fields (``DiagnosticStatus.level``): ``int`` in rosbags, a 1-byte ``bytes`` in rclpy.

Builders always pass every field, so they work with both.
"""

from __future__ import annotations

import array
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from world_monitor.data.bag.codec import (
    COMPRESSED,
    FLOAT_ARRAY,
    IMAGE,
    TRAJECTORY,
    Rejected,
    decode_chunk,
    decode_compressed_image,
    decode_image,
    time_to_ns,
)
from world_monitor.runtime.types import Reason

__all__ = [
    "BOOL",
    "DIAG_ARRAY",
    "FLOAT32",
    "HEADER",
    "TWIST",
    "ConversionError",
    "MsgFactory",
    "actions_from_msg",
    "bool_msg",
    "diagnostic_array_msg",
    "float32_msg",
    "heatmap_rgb",
    "image_from_msg",
    "image_msg",
    "rclpy_factory",
    "rosbags_factory",
    "scale_twist",
    "stamp_of",
    "time_msg",
]

logger = logging.getLogger(__name__)

BOOL = "std_msgs/msg/Bool"
FLOAT32 = "std_msgs/msg/Float32"
HEADER = "std_msgs/msg/Header"
TIME = "builtin_interfaces/msg/Time"
DIAG_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
DIAG_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
KEY_VALUE = "diagnostic_msgs/msg/KeyValue"
TWIST = "geometry_msgs/msg/Twist"
VECTOR3 = "geometry_msgs/msg/Vector3"

#: codec rejection keys that map to a more specific gate reason than invalid_actions
_REASONS: dict[str, Reason] = {
    "non_finite": Reason.non_finite_input,
}


class ConversionError(ValueError):
    """A message cannot be turned into monitor input; ``reason`` is the gate's Reason."""

    def __init__(self, reason: Reason, kind: str, detail: str) -> None:
        super().__init__(f"{reason.value} ({kind}): {detail}")
        self.reason = reason
        self.kind = kind  # the codec's key, e.g. "bad_encoding", "wrong_dim"
        self.detail = detail


@dataclass(frozen=True)
class MsgFactory:
    """How to build messages in one world (rosbags or rclpy); see the module docstring."""

    types: Mapping[str, Callable[..., Any]]
    u8_array: Callable[[np.ndarray], Any]
    byte: Callable[[int], Any]

    def make(self, msgtype: str, **fields: Any) -> Any:
        return self.types[msgtype](**fields)


def rosbags_factory(store: Any) -> MsgFactory:
    """Factory over a ``rosbags`` typestore (e.g. ``codec.get_store('jazzy')``)."""
    return MsgFactory(
        types=store.types,
        u8_array=lambda a: np.ascontiguousarray(a, dtype=np.uint8).reshape(-1),
        byte=int,
    )


def rclpy_factory() -> MsgFactory:
    """Factory over the generated rclpy message classes (needs a ROS 2 install)."""
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import Twist, Vector3
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool, Float32, Header

    types = {
        BOOL: Bool,
        FLOAT32: Float32,
        HEADER: Header,
        TIME: Time,
        IMAGE: Image,
        DIAG_ARRAY: DiagnosticArray,
        DIAG_STATUS: DiagnosticStatus,
        KEY_VALUE: KeyValue,
        TWIST: Twist,
        VECTOR3: Vector3,
    }
    return MsgFactory(
        types=types,
        u8_array=lambda a: array.array("B", np.ascontiguousarray(a, dtype=np.uint8).tobytes()),
        byte=lambda v: bytes([int(v)]),
    )


# ---- decoding ---------------------------------------------------------------------------------


def _with_ndarray_data(msg: Any) -> Any:
    """The codec reads ``np.asarray(msg.data)``: fine for numpy and ``array.array``, wrong for
    ``bytes``; give it a view whose ``data`` is a uint8 array without copying."""
    data = getattr(msg, "data", None)
    if isinstance(data, bytes | bytearray | memoryview):
        fields = {k: getattr(msg, k) for k in dir(msg) if not k.startswith("_")}
        fields["data"] = np.frombuffer(data, dtype=np.uint8)
        return SimpleNamespace(**fields)
    return msg


def stamp_of(msg: Any) -> float | None:
    """Header stamp in seconds, or ``None`` when there is no header or it is zero."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    ns = time_to_ns(header.stamp)
    return ns * 1e-9 if ns else None


def image_from_msg(
    msg: Any, msgtype: str = IMAGE, max_pixels: int | None = None
) -> tuple[np.ndarray, str]:
    """sensor_msgs/Image (rgb8, bgr8, mono8, rgba8, bgra8; any ``step`` padding) or
    CompressedImage (png/jpeg) -> ``(uint8 [H, W, 3] RGB, "rgb8")``.

    The encoding is normalised here (mono8 replicated to 3 channels, bgr reordered), so the
    session always receives rgb8. Anything else (16UC1, 32FC1, bayer, ...) raises
    :class:`ConversionError` with ``Reason.invalid_image``. A frame over ``max_pixels``
    (default :data:`~world_monitor.data.bag.codec.MAX_IMAGE_PIXELS`, 4096 x 4096) is refused
    (``too_large``) from its header, before decoding: the node's image callback must not spend
    seconds on one hostile PNG. The bundle's input size is not checked here (frames are
    resized to it afterwards), only this budget.
    """
    try:
        if msgtype == COMPRESSED:
            return decode_compressed_image(_with_ndarray_data(msg), max_pixels), "rgb8"
        if msgtype == IMAGE:
            return decode_image(_with_ndarray_data(msg), max_pixels), "rgb8"
    except Rejected as rej:
        raise ConversionError(Reason.invalid_image, rej.reason, rej.detail) from None
    except Exception as exc:  # noqa: BLE001 -- a malformed message may fail anywhere
        raise ConversionError(
            Reason.invalid_image, "malformed", f"{type(exc).__name__}: {exc}"
        ) from None
    raise ConversionError(Reason.invalid_image, "bad_type", f"{msgtype} is not an image type")


def actions_from_msg(
    msg: Any,
    msgtype: str,
    fallback_stamp: float,
    action_dim: int | None = None,
    field: str = "positions",
) -> tuple[np.ndarray, float]:
    """JointTrajectory (one point per future step, values in ``field``: ``positions`` unless
    the policy commands velocities or torques) or Float32MultiArray (``layout.dim`` = [H, A])
    -> ``(float32 [H, A], stamp seconds)``.

    Float32MultiArray has no header, and a JointTrajectory may carry a zero stamp: then
    ``fallback_stamp`` (receive time in the node, log time in replay) is the chunk's stamp.
    """
    if msgtype not in (TRAJECTORY, FLOAT_ARRAY):
        raise ConversionError(
            Reason.invalid_actions, "bad_type", f"{msgtype} is not an action type"
        )
    fallback_ns = round(float(fallback_stamp) * 1e9)
    try:
        chunk = decode_chunk(msg, msgtype, fallback_ns, action_dim, field)
    except Rejected as rej:
        raise ConversionError(
            _REASONS.get(rej.reason, Reason.invalid_actions), rej.reason, rej.detail
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(
            Reason.invalid_actions, "malformed", f"{type(exc).__name__}: {exc}"
        ) from None
    stamp = fallback_stamp if chunk.stamp_source == "log_time" else chunk.stamp_ns * 1e-9
    return chunk.points, float(stamp)


# ---- building ---------------------------------------------------------------------------------


def time_msg(factory: MsgFactory, seconds: float) -> Any:
    ns = round(float(seconds) * 1e9)
    return factory.make(TIME, sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def bool_msg(factory: MsgFactory, value: bool) -> Any:
    return factory.make(BOOL, data=bool(value))


def float32_msg(factory: MsgFactory, value: float) -> Any:
    return factory.make(FLOAT32, data=float(value))


def image_msg(factory: MsgFactory, rgb: np.ndarray, header: Any) -> Any:
    """uint8 [H, W, 3] -> sensor_msgs/Image rgb8 with the given header (the camera's)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image_msg needs uint8 [H, W, 3], got shape {rgb.shape}")
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    return factory.make(
        IMAGE,
        header=header,
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=factory.u8_array(rgb),
    )


def header_msg(factory: MsgFactory, seconds: float, frame_id: str = "") -> Any:
    return factory.make(HEADER, stamp=time_msg(factory, seconds), frame_id=str(frame_id))


def diagnostic_array_msg(
    factory: MsgFactory,
    header: Any,
    statuses: Sequence[tuple[int, str, str, str, Sequence[tuple[str, str]]]],
) -> Any:
    """DiagnosticArray from ``(level, name, message, hardware_id, [(key, value), ...])``."""
    out = []
    for level, name, message, hardware_id, values in statuses:
        kvs = [factory.make(KEY_VALUE, key=str(k), value=str(v)) for k, v in values]
        out.append(
            factory.make(
                DIAG_STATUS,
                level=factory.byte(int(level)),
                name=str(name),
                message=str(message),
                hardware_id=str(hardware_id),
                values=kvs,
            )
        )
    return factory.make(DIAG_ARRAY, header=header, status=out)


def scale_twist(factory: MsgFactory, twist: Any, scale: float) -> Any:
    """A new Twist with linear and angular velocity multiplied by ``scale`` (SLOW)."""

    def vec(v: Any) -> Any:
        return factory.make(
            VECTOR3, x=float(v.x) * scale, y=float(v.y) * scale, z=float(v.z) * scale
        )

    return factory.make(TWIST, linear=vec(twist.linear), angular=vec(twist.angular))


def heatmap_rgb(confidence_map: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Colour image (uint8 [H, W, 3]) of an ``Assessment.confidence_map`` [steps, C, h, w].

    Shows the predicted step with the lowest mean confidence (where the alert is), upsampled
    to the camera size by :func:`world_monitor.uq.heatmap.confidence_heatmap` (red = low
    confidence, green = high, fixed [0, 1] range so colours mean the same across frames).
    """
    from world_monitor.uq.heatmap import confidence_heatmap

    # fail closed: NaN reads as zero confidence (red), also when choosing the worst step
    q = np.nan_to_num(np.asarray(confidence_map, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if q.ndim == 4:
        q = q[int(np.argmin(q.reshape(q.shape[0], -1).mean(axis=1)))]
    return confidence_heatmap(q, (int(image_hw[0]), int(image_hw[1])))
