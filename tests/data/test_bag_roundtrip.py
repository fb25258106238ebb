"""rosbag2 export -> import round trips (MCAP and sqlite3) and import of foreign layouts."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.data.bag import (
    BagError,
    export_dataset_bags,
    export_episode_bag,
    import_episode_bag,
    load_episode_bag,
)
from world_monitor.data.bag.codec import encode_compressed
from world_monitor.data.dataset import DatasetWriter, EpisodeDataset


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_lossless_roundtrip(tmp_path, make_ep, storage, with_mask):
    ep = make_ep(5, shift="lighting" if with_mask else None, mask=with_mask, size=13)
    path = export_episode_bag(ep, tmp_path / "bag", storage=storage)
    expected_file = path / f"bag.{'mcap' if storage == 'mcap' else 'db3'}"
    assert expected_file.is_file() and not (tmp_path / "bag.partial").exists()
    res = load_episode_bag(path)
    assert res.episode.equals(ep)
    assert res.report.storage == storage and res.report.has_shift_mask == with_mask
    assert res.report.frames_used == res.report.chunks_used == ep.length
    # the bare storage file is readable too
    assert import_episode_bag(expected_file).equals(ep)


def test_message_contents_follow_the_ros_conventions(tmp_path, make_ep, store):
    from rosbags.rosbag2 import Reader

    ep = make_ep(1, length=10)
    path = export_episode_bag(ep, tmp_path / "b", horizon=4, frame_id="cam0")
    with Reader(path) as r:
        msgs = [(c.topic, store.deserialize_cdr(raw, c.msgtype)) for c, _, raw in r.messages()]
    trajs = [m for t, m in msgs if t == "/policy/action_chunk"]
    imgs = [m for t, m in msgs if t == "/camera/image_raw"]
    assert len(trajs) == len(imgs) == 10
    assert imgs[0].encoding == "rgb8" and imgs[0].header.frame_id == "cam0"
    assert trajs[0].joint_names == ["ee_dx", "ee_dy", "ee_dz", "gripper"]
    assert [len(m.points) for m in trajs] == [4] * 10
    # past the episode end the chunk holds the last action (a policy always publishes H points)
    last = ep.actions[-1].astype(np.float64)
    assert all(np.array_equal(p.positions, last) for p in trajs[-1].points)
    assert np.array_equal(trajs[7].points[2].positions, last)
    p = trajs[2].points
    assert np.array_equal(np.array([q.positions for q in p], np.float32), ep.actions[2:6])
    assert (p[1].time_from_start.sec, p[1].time_from_start.nanosec) == (0, 200_000_000)
    assert trajs[3].header.stamp == imgs[3].header.stamp


def test_compressed_png_lossless_jpeg_close(tmp_path, make_ep):
    ep = make_ep(2, size=32)
    png = export_episode_bag(ep, tmp_path / "png", compressed="png")
    assert import_episode_bag(png).equals(ep)
    smooth = ep.frames.copy()
    smooth[:] = np.linspace(0, 255, 32, dtype=np.uint8)[None, None, :, None]
    ep.frames = smooth
    jpg = import_episode_bag(export_episode_bag(ep, tmp_path / "jpg", compressed="jpeg"))
    err = np.abs(jpg.frames.astype(int) - ep.frames.astype(int))
    assert err.mean() < 3 and np.array_equal(jpg.actions, ep.actions)


def test_dataset_export_one_bag_per_episode(tmp_path, make_ep):
    w = DatasetWriter(tmp_path / "ds")
    for i in range(2):
        w.write(make_ep(i, length=4), episode_id=f"e{i}", split="train")
    w.finalize()
    ds = EpisodeDataset(tmp_path / "ds")
    paths = export_dataset_bags(ds, tmp_path / "bags", storage="sqlite3", progress=False)
    assert [p.name for p in paths] == ["e0", "e1"]
    assert import_episode_bag(paths[1]).equals(ds[1])
    assert export_dataset_bags(ds, tmp_path / "bags", progress=False) == paths  # resumable
    with pytest.raises(BagError, match="exists already"):
        export_episode_bag(ds[0], paths[0])


def test_foreign_bag_float_array_bgr_extra_topic(tmp_path, rawbag):
    def bgr(i, ns, frame):
        return rawbag.image(ns, frame[:, :, ::-1], "bgr8")

    def fa(i, ns, chunk):
        return rawbag.float_array(chunk)

    other = rawbag.t["std_msgs/msg/String"](data="hi")
    msgs, frames, actions = rawbag.simple(
        6, image_fn=bgr, chunk_fn=fa, extra=[("/chatter", 1_000_000_000, other)] * 3
    )
    path = rawbag.write(tmp_path / "b", msgs, storage="sqlite3")
    res = load_episode_bag(path)
    ep = res.episode
    assert np.array_equal(ep.frames, frames) and np.array_equal(ep.actions, actions)
    assert ep.meta.scenario == "recorded" and ep.meta.extra["success_known"] is False
    assert ep.meta.fps == pytest.approx(10.0)
    assert ep.stamps[0] == 1.0 and res.report.ignored_messages == {"/chatter": 3}


def test_mono8_and_compressed_png_foreign(tmp_path, rawbag):
    def mono(i, ns, frame):
        return rawbag.image(ns, frame[:, :, :1].copy(), "mono8")

    msgs, frames, _ = rawbag.simple(3, image_fn=mono)
    ep = import_episode_bag(rawbag.write(tmp_path / "m", msgs))
    assert np.array_equal(ep.frames, np.repeat(frames[:, :, :, :1], 3, axis=-1))

    def comp(i, ns, frame):
        return rawbag.compressed(ns, encode_compressed(frame, "png"), "png")

    msgs, frames, _ = rawbag.simple(3, image_fn=comp)
    assert np.array_equal(import_episode_bag(rawbag.write(tmp_path / "c", msgs)).frames, frames)


def test_sync_trims_edges_and_handles_missing_chunks(tmp_path, rawbag):
    def drop(idx):
        def fn(i, ns, chunk):
            return rawbag.t["std_msgs/msg/String"](data="x") if i in idx else None

        return fn

    # policy starts late: frame 0 has no chunk -> trimmed and counted
    msgs, frames, actions = rawbag.simple(6)
    msgs = [m for m in msgs if not (m[0] == "/act" and m[1] == 1_000_000_000)]
    res = load_episode_bag(rawbag.write(tmp_path / "late", msgs))
    assert res.report.trimmed_frames == 1 and np.array_equal(res.episode.frames, frames[1:])
    assert np.array_equal(res.episode.actions, actions[1:])
    # interior gap at frame 3
    msgs, frames, actions = rawbag.simple(6)
    msgs = [m for m in msgs if not (m[0] == "/act" and m[1] == 1_300_000_000)]
    path = rawbag.write(tmp_path / "gap", msgs)
    with pytest.raises(BagError, match=r"1 frame\(s\) have no action chunk.*\[3\]"):
        import_episode_bag(path)
    dropped = load_episode_bag(path, on_missing="drop")
    assert dropped.report.dropped_frames == [3] and dropped.episode.length == 5
    assert np.array_equal(dropped.episode.frames, frames[[0, 1, 2, 4, 5]])
    planned = load_episode_bag(path, on_missing="plan")
    assert planned.report.planned_frames == [3]
    # point 1 of frame 2's chunk is actions[3]: exactly what the open-loop policy executed
    assert np.array_equal(planned.episode.actions, actions)
    # a later-stamped chunk (after the frame) is not used for that frame
    msgs, _, _ = rawbag.simple(3)
    shifted = [
        (t, ns, rawbag.trajectory(ns + 1_000_000, [[0.0] * 4])) if t == "/act" else (t, ns, m)
        for t, ns, m in msgs
    ]
    path = rawbag.write(tmp_path / "after", shifted)
    with pytest.raises(BagError, match="no frame has an action chunk.*chunk_delay"):
        import_episode_bag(path)
    # ...unless the publication delay is declared
    assert load_episode_bag(path, chunk_delay=0.002).episode.length == 3


def test_humble_typestore_bags_read_with_jazzy(tmp_path, make_ep):
    ep = make_ep(4, length=3)
    path = export_episode_bag(ep, tmp_path / "h", distro="humble", storage="sqlite3")
    assert import_episode_bag(path, distro="jazzy").equals(ep)
    with pytest.raises(ValueError, match="distro"):
        export_episode_bag(ep, tmp_path / "x", distro="rolling")


def test_convert_many(tmp_path, make_ep, rawbag):
    from world_monitor.data.bag import export_path, import_paths

    w = DatasetWriter(tmp_path / "ds")
    w.write(make_ep(0, length=4), episode_id="a", split="train")
    w.write(make_ep(1, length=4, shift="fog", mask=True), episode_id="b", split="test")
    w.finalize()
    bags = export_path(tmp_path / "ds", tmp_path / "bags", shift="none", progress=False)
    assert [p.name for p in bags] == ["a"]
    bags = export_path(tmp_path / "ds", tmp_path / "bags", storage="sqlite3", progress=False)
    assert [p.name for p in bags] == ["a", "b"]
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(b"junk")
    summary = import_paths([*bags, broken], tmp_path / "imported", split="calib", progress=False)
    assert summary["imported"] == 2 and summary["failed"] == 1
    assert "cannot open bag" in summary["errors"][str(broken)]
    ds = EpisodeDataset(tmp_path / "imported")
    assert ds.load("b").equals(EpisodeDataset(tmp_path / "ds").load("b"))
    assert {r.split for r in ds.index} == {"calib"}
    again = import_paths(bags, tmp_path / "imported", progress=False)
    assert again["skipped"] == 2
