"""Replay of a recording whose camera is not the bundle's size: prepared like the node does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_episode
from rosbags.rosbag2 import Reader

from world_monitor.data.bag.codec import get_store
from world_monitor.data.frame_prep import FramePrepError
from world_monitor.replay import BundleMismatch, replay_bag
from world_monitor.replay.replay import HEATMAP_TOPIC


def _big(episode, hw=(48, 64)):
    """The same episode seen by a 64x48 camera (every frame upscaled)."""
    frames = np.repeat(np.repeat(episode.frames, 4, axis=1), 4, axis=2)[:, : hw[0], : hw[1]]
    return dataclasses.replace(episode, frames=np.ascontiguousarray(frames), shift_mask=None)


@pytest.mark.parametrize("mode", ["stretch", "center_crop", "letterbox"])
def test_a_larger_camera_is_replayed_and_the_heatmap_has_its_size(
    make_bag, fake_monitor, tmp_path, mode
) -> None:
    """Before: every frame of another size was rejected as invalid_image, the lock never opened."""
    bag = make_bag(_big(make_episode(onset=10)))
    res = replay_bag(
        bag, tmp_path / "out", monitor=fake_monitor(), image_resize=mode, progress=False
    )
    s = res.summary
    assert s["session"]["accounting"]["image"]["rejected_total"] == 0
    assert s["lock"]["first_open"] is not None
    risks = [d["risk"] for d in s["session"]["decisions"] if d["risk"] is not None]
    # the fake's risk is mean brightness: dark before the onset, bright after (letterbox pads
    # a quarter of the input with black, so it is compared, not thresholded)
    assert max(risks[:5]) < 0.15 and min(risks[-5:]) > 0.6
    store = get_store("jazzy")
    with Reader(res.bag_path) as reader:
        heat = [
            store.deserialize_cdr(raw, c.msgtype)
            for c, _, raw in reader.messages()
            if c.topic == HEATMAP_TOPIC
        ]
    assert heat and {(m.height, m.width) for m in heat} == {(48, 64)}


def test_a_crop_roi_outside_the_camera_is_refused_or_counted_per_frame(
    make_bag, fake_monitor
) -> None:
    bag = make_bag(_big(make_episode()))
    with pytest.raises(BundleMismatch, match="crop ROI x=0 y=0 w=100 h=100 does not fit"):
        replay_bag(bag, monitor=fake_monitor(), crop_roi=(0, 0, 100, 100), progress=False)
    s = replay_bag(
        bag,
        monitor=fake_monitor(),
        crop_roi=(0, 0, 100, 100),
        write_bag=False,
        progress=False,
        check_fit=False,
    ).summary
    rejected = s["session"]["accounting"]["image"]["rejected"]
    assert rejected == {"invalid_image": 20} and s["lock"]["first_open"] is None


def test_a_malformed_crop_roi_is_refused_before_any_work(make_bag, fake_monitor) -> None:
    with pytest.raises(FramePrepError):
        replay_bag(make_bag(make_episode()), monitor=fake_monitor(), crop_roi="1,2", progress=False)
