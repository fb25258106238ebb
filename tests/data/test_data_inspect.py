"""inspect_path / format_report for datasets and bags: every message accounted for."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.data.bag import BagError, export_episode_bag
from world_monitor.data.dataset import DatasetWriter
from world_monitor.data.inspect import format_report, inspect_path


def test_inspect_dataset(tmp_path, make_ep):
    w = DatasetWriter(tmp_path)
    w.write(make_ep(0), episode_id="a", split="train")
    w.write(make_ep(1, shift="fog", mask=True, success=False), episode_id="b", split="test")
    w.finalize()
    rep = inspect_path(tmp_path)
    assert rep["kind"] == "dataset" and rep["episodes"] == 2 and rep["success_rate"] == 0.5
    text = format_report(rep)
    assert "episodes 2" in text and "fog: 1" in text


def test_inspect_exported_bag(tmp_path, make_ep):
    ep = make_ep(0, length=10, mask=True, shift="fog")
    path = export_episode_bag(ep, tmp_path / "b", storage="sqlite3")
    rep = inspect_path(path)
    assert rep["kind"] == "bag" and rep["storage"] == "sqlite3" and rep["accounted"]
    assert rep["messages_read"] == 31 and rep["usable"] == 31 and rep["rejected"] == 0
    cam = rep["topics"]["/camera/image_raw"]
    assert cam["image_size"] == [16, 16] and cam["encoding"] == "rgb8"
    assert cam["rate_hz"] == pytest.approx(10.0) and rep["duration_s"] == pytest.approx(0.9)
    act = rep["topics"]["/policy/action_chunk"]
    assert act["action_dim"] == 4 and act["horizon"] == {"min": 8, "max": 8}
    assert act["joint_names"] == ["ee_dx", "ee_dy", "ee_dz", "gripper"]
    text = format_report(rep)
    assert "/policy/action_chunk" in text and "10.00 Hz" in text


def test_inspect_counts_every_rejection(tmp_path, rawbag):
    s = rawbag.t["std_msgs/msg/String"]

    def img(i, ns, frame):
        if i == 1:
            return rawbag.image(ns, frame[:, :, 0].astype(np.uint16), "16UC1")
        if i == 2:
            return rawbag.image(ns, frame[:4])
        return None

    def act(i, ns, chunk):
        if i == 3:
            return rawbag.trajectory(ns, np.full_like(chunk, np.nan))
        if i == 4:
            return rawbag.trajectory(ns - 250_000_000, chunk)
        return None

    msgs, _, _ = rawbag.simple(6, image_fn=img, chunk_fn=act, extra=[("/chatter", 2, s(data="x"))])
    rep = inspect_path(rawbag.write(tmp_path / "b", msgs))
    assert rep["accounted"] and rep["messages_read"] == 13
    assert rep["usable"] == 8 and rep["rejected"] == 4 and rep["ignored"] == 1
    assert rep["topics"]["/cam"]["rejected"] == {"bad_encoding": 1, "size_mismatch": 1}
    assert rep["topics"]["/act"]["rejected"] == {"non_finite": 1, "out_of_order": 1}
    assert rep["topics"]["/chatter"]["role"] == "ignored"
    text = format_report(rep)
    assert "rejected 1 x bad_encoding" in text and "message #1" in text


def test_inspect_unknown_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect_path(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="neither a dataset"):
        inspect_path(tmp_path / "plain")
