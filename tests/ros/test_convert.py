"""Message <-> numpy conversion, tested with rosbags message classes (no rclpy needed)."""

from __future__ import annotations

import array

import numpy as np
import pytest

from world_monitor.data.bag.codec import (
    COMPRESSED,
    FLOAT_ARRAY,
    IMAGE,
    TRAJECTORY,
    encode_compressed,
    get_store,
    ns_to_time,
)
from world_monitor.ros.convert import (
    BOOL,
    DIAG_ARRAY,
    FLOAT32,
    TWIST,
    ConversionError,
    MsgFactory,
    actions_from_msg,
    bool_msg,
    diagnostic_array_msg,
    float32_msg,
    header_msg,
    heatmap_rgb,
    image_from_msg,
    image_msg,
    rosbags_factory,
    scale_twist,
    stamp_of,
)
from world_monitor.runtime.types import Reason


@pytest.fixture(params=["humble", "jazzy"])
def store(request):
    return get_store(request.param)


def _header(store, t=12.5, frame_id="cam"):
    return store.types["std_msgs/msg/Header"](
        stamp=ns_to_time(store, round(t * 1e9)), frame_id=frame_id
    )


def _image(store, pixels: np.ndarray, encoding: str, pad: int = 0):
    h, w = pixels.shape[:2]
    ch = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(h, w * ch)
    rows = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)
    return store.types[IMAGE](
        header=_header(store),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * ch + pad,
        data=rows.reshape(-1),
    )


def _rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_and_bgr8_with_row_padding(store, pad):
    rgb = _rgb()
    out, enc = image_from_msg(_image(store, rgb, "rgb8", pad))
    assert enc == "rgb8" and np.array_equal(out, rgb)
    out, _ = image_from_msg(_image(store, rgb[..., ::-1].copy(), "bgr8", pad))
    assert np.array_equal(out, rgb)


def test_mono8_replicated(store):
    mono = _rgb()[..., 0].copy()
    out, enc = image_from_msg(_image(store, mono, "mono8", pad=1))
    assert enc == "rgb8" and out.shape == (5, 7, 3)
    assert all(np.array_equal(out[..., c], mono) for c in range(3))


def test_bytes_and_array_payloads_like_rclpy(store):
    rgb = _rgb()
    msg = _image(store, rgb, "rgb8")
    raw = msg.data.tobytes()
    for data in (raw, array.array("B", raw)):
        msg.data = data
        out, _ = image_from_msg(msg)
        assert np.array_equal(out, rgb)


def test_unsupported_encoding_and_short_data_rejected(store):
    msg = _image(store, _rgb()[..., 0].copy(), "mono8")
    msg.encoding = "16UC1"
    with pytest.raises(ConversionError) as e:
        image_from_msg(msg)
    assert e.value.reason is Reason.invalid_image and e.value.kind == "bad_encoding"
    msg = _image(store, _rgb(), "rgb8")
    msg.data = msg.data[:10]
    with pytest.raises(ConversionError, match="bad_size"):
        image_from_msg(msg)


def test_compressed_png(store):
    rgb = _rgb()
    msg = store.types[COMPRESSED](
        header=_header(store),
        format="png",
        data=np.frombuffer(encode_compressed(rgb, "png"), np.uint8),
    )
    out, enc = image_from_msg(msg, COMPRESSED)
    assert np.array_equal(out, rgb) and stamp_of(msg) == pytest.approx(12.5)
    msg.data = np.zeros(10, np.uint8)
    with pytest.raises(ConversionError, match="undecodable"):
        image_from_msg(msg, COMPRESSED)


def _trajectory(store, actions: np.ndarray, t: float = 3.0):
    ty = store.types
    empty = np.zeros(0, np.float64)
    dur = ty["builtin_interfaces/msg/Duration"](sec=0, nanosec=0)
    pts = [
        ty["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.asarray(a, np.float64),
            velocities=empty,
            accelerations=empty,
            effort=empty,
            time_from_start=dur,
        )
        for a in actions
    ]
    names = [f"j{i}" for i in range(actions.shape[1])]
    return ty[TRAJECTORY](header=_header(store, t), joint_names=names, points=pts)


def test_joint_trajectory_chunk(store):
    acts = np.arange(12, dtype=np.float32).reshape(3, 4)
    chunk, stamp = actions_from_msg(_trajectory(store, acts), TRAJECTORY, 99.0, 4)
    assert chunk.dtype == np.float32 and np.array_equal(chunk, acts) and stamp == 3.0
    chunk, stamp = actions_from_msg(_trajectory(store, acts, t=0.0), TRAJECTORY, 99.0, 4)
    assert stamp == 99.0  # zero header stamp -> receive/log time
    with pytest.raises(ConversionError) as e:
        actions_from_msg(_trajectory(store, acts), TRAJECTORY, 99.0, 5)
    assert e.value.reason is Reason.invalid_actions and e.value.kind == "wrong_dim"
    bad = acts.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ConversionError) as e:
        actions_from_msg(_trajectory(store, bad), TRAJECTORY, 99.0, 4)
    assert e.value.reason is Reason.non_finite_input


def _float_array(store, h, a, values=None, offset=0):
    ty = store.types
    dim = ty["std_msgs/msg/MultiArrayDimension"]
    layout = ty["std_msgs/msg/MultiArrayLayout"](
        dim=[dim(label="horizon", size=h, stride=h * a), dim(label="action", size=a, stride=a)],
        data_offset=offset,
    )
    data = values if values is not None else np.arange(offset + h * a, dtype=np.float32)
    return ty[FLOAT_ARRAY](layout=layout, data=data)


def test_float32_multiarray_chunk(store):
    chunk, stamp = actions_from_msg(_float_array(store, 2, 3, offset=1), FLOAT_ARRAY, 5.0, 3)
    assert chunk.shape == (2, 3) and chunk[0, 0] == 1.0 and stamp == 5.0
    with pytest.raises(ConversionError, match="bad_layout"):
        actions_from_msg(_float_array(store, 4, 3, np.zeros(5, np.float32)), FLOAT_ARRAY, 5.0)
    with pytest.raises(ConversionError, match="bad_type"):
        actions_from_msg(_float_array(store, 2, 3), "std_msgs/msg/String", 5.0)


def test_builders_roundtrip_through_cdr(store):
    f = rosbags_factory(store)
    for msgtype, msg in (
        (BOOL, bool_msg(f, True)),
        (FLOAT32, float32_msg(f, 0.25)),
    ):
        back = store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)
        assert back.data == msg.data
    rgb = _rgb()
    header = _header(store, 7.25, "camera_optical")
    img = image_msg(f, rgb, header)
    back = store.deserialize_cdr(store.serialize_cdr(img, IMAGE), IMAGE)
    out, _ = image_from_msg(back)
    assert np.array_equal(out, rgb) and back.header.frame_id == "camera_optical"
    assert back.header.stamp.sec == 7 and back.header.stamp.nanosec == 250_000_000
    diag = diagnostic_array_msg(
        f,
        header_msg(f, 1.5),
        [(2, "world_monitor: gate", "STOP (backend_error)", "wm", [("k", "v")])],
    )
    back = store.deserialize_cdr(store.serialize_cdr(diag, DIAG_ARRAY), DIAG_ARRAY)
    st = back.status[0]
    assert st.level == 2 and st.values[0].key == "k" and back.header.stamp.sec == 1


def test_twist_scaling(store):
    f = rosbags_factory(store)
    v3 = store.types["geometry_msgs/msg/Vector3"]
    tw = store.types[TWIST](linear=v3(x=1.0, y=-2.0, z=0.0), angular=v3(x=0.0, y=0.0, z=0.5))
    out = scale_twist(f, tw, 0.5)
    assert (out.linear.x, out.linear.y, out.angular.z) == (0.5, -1.0, 0.25)


def test_rclpy_style_factory_byte_fields():
    """rclpy represents ``byte`` as 1-byte bytes and uint8[] as array('B'): builders honour it."""
    made = {}

    def cls(name):
        def make(**fields):
            made.setdefault(name, []).append(fields)
            return fields

        return make

    types = {
        k: cls(k)
        for k in (
            "diagnostic_msgs/msg/DiagnosticArray",
            "diagnostic_msgs/msg/DiagnosticStatus",
            "diagnostic_msgs/msg/KeyValue",
            IMAGE,
        )
    }
    f = MsgFactory(
        types=types,
        u8_array=lambda a: array.array("B", np.asarray(a, np.uint8).tobytes()),
        byte=lambda v: bytes([v]),
    )
    diagnostic_array_msg(f, None, [(3, "n", "m", "h", [])])
    assert made["diagnostic_msgs/msg/DiagnosticStatus"][0]["level"] == b"\x03"
    img = image_msg(f, _rgb(), None)
    assert isinstance(img["data"], array.array) and len(img["data"]) == 5 * 7 * 3


def test_heatmap_shows_worst_step():
    q = np.ones((3, 2, 4, 4), np.float32)
    q[1, :, :2, :2] = 0.0  # step 1 is the least confident, top-left quadrant
    rgb = heatmap_rgb(q, (8, 12))
    assert rgb.shape == (8, 12, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] > rgb[0, 0, 1]  # red where confidence is low
    assert rgb[-1, -1, 1] > rgb[-1, -1, 0]  # green where confident
    nan = np.full((1, 1, 2, 2), np.nan, np.float32)
    assert heatmap_rgb(nan, (4, 4)).shape == (4, 4, 3)
