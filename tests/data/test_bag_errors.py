"""Bad bags: every problem is a BagError naming bag, topic and message -- or, inspected, counted."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.data.bag import (
    BagError,
    export_episode_bag,
    import_episode_bag,
    load_episode_bag,
)
from world_monitor.data.inspect import inspect_path


def _import_error(path, kind, topic, index, **kw):
    with pytest.raises(BagError) as info:
        import_episode_bag(path, **kw)
    err = info.value
    assert err.kind == kind and err.topic == topic and err.index == index, str(err)
    assert str(path) in str(err) and f"message #{index}" in str(err) and topic in str(err)
    return err


def _inspect_counts(path, topic, reason, n=1):
    rep = inspect_path(path)
    assert rep["accounted"], rep
    assert rep["topics"][topic]["rejected"] == {reason: n}, rep["topics"][topic]
    return rep


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag(tmp_path, make_ep, storage):
    ep = make_ep(0, length=30, size=32)
    path = export_episode_bag(ep, tmp_path / "b", storage=storage)
    f = next(path.glob("b.*"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(
        BagError, match=r"b(/b\.(mcap|db3))?: .*(truncated|corrupt|cannot open)"
    ) as info:
        import_episode_bag(path)
    assert "Traceback" not in str(info.value)
    try:  # inspect reports what it could read, or says plainly that the bag cannot be opened
        rep = inspect_path(path)
    except BagError as exc:
        assert "cannot open bag" in str(exc)
    else:
        assert rep["read_error"] and rep["messages_read"] < rep["messages_in_metadata"]


def test_garbage_and_missing_paths(tmp_path):
    bad = tmp_path / "x.mcap"
    bad.write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError, match="x.mcap: cannot open bag"):
        import_episode_bag(bad)
    with pytest.raises(BagError, match="does not exist"):
        import_episode_bag(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(BagError, match="cannot open bag"):
        import_episode_bag(tmp_path / "d")


def test_missing_topics_lists_what_is_there(tmp_path, rawbag):
    msgs, _, _ = rawbag.simple(3)
    path = rawbag.write(
        tmp_path / "b",
        [m for m in msgs if m[0] == "/cam"]
        + [("/chatter", 5, rawbag.t["std_msgs/msg/String"](data="x"))],
    )
    with pytest.raises(
        BagError,
        match=r"no action topic .*/cam \[sensor_msgs/msg/Image, 3 msgs\].*/chatter \[std_msgs/msg/String",
    ):
        import_episode_bag(path)
    path2 = rawbag.write(tmp_path / "c", msgs)
    with pytest.raises(
        BagError,
        match=r"requested image topic '/camera/image_raw' not found; topics in the bag: /act \[trajectory_msgs/msg/JointTrajectory",
    ):
        import_episode_bag(path2, image_topic="/camera/image_raw")
    with pytest.raises(BagError, match="has type sensor_msgs/msg/Image"):
        import_episode_bag(path2, action_topic="/cam")


def test_wrong_encoding(tmp_path, rawbag):
    def depth(i, ns, frame):
        return rawbag.image(ns, frame[:, :, 0].astype(np.uint16), "16UC1") if i == 2 else None

    path = rawbag.write(tmp_path / "b", rawbag.simple(5, image_fn=depth)[0])
    err = _import_error(path, "bad_encoding", "/cam", 2)
    assert "16UC1" in str(err)
    _inspect_counts(path, "/cam", "bad_encoding")


def test_inconsistent_image_size(tmp_path, rawbag):
    def small(i, ns, frame):
        return rawbag.image(ns, frame[:4, :4]) if i == 3 else None

    path = rawbag.write(tmp_path / "b", rawbag.simple(5, image_fn=small)[0])
    err = _import_error(path, "size_mismatch", "/cam", 3)
    assert "4x4" in str(err) and "8x8" in str(err)
    _inspect_counts(path, "/cam", "size_mismatch")


def test_truncated_image_data_and_undecodable_jpeg(tmp_path, rawbag):
    from world_monitor.data.bag.codec import encode_compressed

    def short(i, ns, frame):
        if i == 1:
            m = rawbag.image(ns, frame)
            m.data = m.data[:10]
            return m
        return None

    path = rawbag.write(tmp_path / "b", rawbag.simple(4, image_fn=short)[0])
    _import_error(path, "bad_size", "/cam", 1)
    _inspect_counts(path, "/cam", "bad_size")

    def comp(i, ns, frame):
        data = b"\xff\xd8garbage" if i == 2 else encode_compressed(frame, "jpeg")
        return rawbag.compressed(ns, data, "jpeg")

    path = rawbag.write(tmp_path / "c", rawbag.simple(4, image_fn=comp)[0])
    _import_error(path, "undecodable", "/cam", 2)
    _inspect_counts(path, "/cam", "undecodable")
    # a message whose bytes do not match its declared type
    msgs, _, _ = rawbag.simple(3)
    msgs[2] = ("/cam", msgs[2][1], rawbag.t["std_msgs/msg/String"](data="x"))
    path = rawbag.write(tmp_path / "d", msgs)
    _import_error(path, "undeserializable", "/cam", 1)


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        (lambda rb, ns, c: rb.trajectory(ns, c[:, :3]), "wrong_dim"),
        (
            lambda rb, ns, c: rb.trajectory(ns, [list(c[0]), list(c[1, :3])]),
            "ragged_chunk",
        ),
        (
            lambda rb, ns, c: rb.trajectory(ns, np.where(np.eye(3, 4, dtype=bool), np.nan, c)),
            "non_finite",
        ),
        (lambda rb, ns, c: rb.trajectory(ns, np.full_like(c, np.inf)), "non_finite"),
        (lambda rb, ns, c: rb.trajectory(ns, []), "empty_chunk"),
        (lambda rb, ns, c: rb.trajectory(ns, c, names=["a", "b"]), "ragged_chunk"),
    ],
)
def test_bad_action_chunks(tmp_path, rawbag, bad, kind):
    def fn(i, ns, chunk):
        return bad(rawbag, ns, chunk) if i == 2 else None

    path = rawbag.write(tmp_path / "b", rawbag.simple(5, chunk_fn=fn)[0])
    _import_error(path, kind, "/act", 2)
    _inspect_counts(path, "/act", kind)


def test_wrong_dim_against_requested_dim_and_bad_layout(tmp_path, rawbag):
    path = rawbag.write(tmp_path / "b", rawbag.simple(3)[0])
    _import_error(path, "wrong_dim", "/act", 0, action_dim=6)

    def fa(i, ns, chunk):
        m = rawbag.float_array(chunk)
        if i == 1:
            m.layout.dim[0].size = 99
        return m

    path = rawbag.write(tmp_path / "c", rawbag.simple(3, chunk_fn=fa)[0])
    _import_error(path, "bad_layout", "/act", 1)


@pytest.mark.parametrize(
    ("offset_ns", "kind"),
    [(-100_000_000, "duplicate_stamp"), (-150_000_000, "out_of_order")],
)
def test_out_of_order_and_duplicate_stamps(tmp_path, rawbag, offset_ns, kind):
    def fn(i, ns, frame):
        return rawbag.image(ns + offset_ns, frame) if i == 3 else None

    path = rawbag.write(tmp_path / "b", rawbag.simple(5, image_fn=fn)[0])
    _import_error(path, kind, "/cam", 3)
    _inspect_counts(path, "/cam", kind)

    def ch(i, ns, chunk):
        return rawbag.trajectory(ns + offset_ns, chunk) if i == 3 else None

    path = rawbag.write(tmp_path / "c", rawbag.simple(5, chunk_fn=ch)[0])
    _import_error(path, kind, "/act", 3)


def test_bad_meta_and_mask(tmp_path, rawbag, make_ep):
    msgs, _, _ = rawbag.simple(3)
    s = rawbag.t["std_msgs/msg/String"]
    path = rawbag.write(
        tmp_path / "b", [("/world_monitor/episode_meta", 1, s(data="{oops"))] + msgs
    )
    _import_error(path, "bad_meta", "/world_monitor/episode_meta", 0)
    # a mask of another size than the frames
    ep = make_ep(1, mask=True, shift="x")
    bag = export_episode_bag(ep, tmp_path / "m")
    res = load_episode_bag(bag)
    assert res.report.has_shift_mask
    msgs = [(t, ns, m) for t, ns, m in msgs]
    m = rawbag.image(1_000_000_000, np.zeros((4, 4, 1), np.uint8), "mono8")
    path = rawbag.write(tmp_path / "c", [("/world_monitor/shift_mask", 1_000_000_000, m)] + msgs)
    with pytest.raises(BagError, match="shift_mask"):
        import_episode_bag(path)
