"""Camera frames of any size -> the bundle's input size, and the heatmap back onto the camera."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.data.frame_prep import UNSEEN, FramePrep, FramePrepError, parse_roi


def _camera(h: int, w: int) -> np.ndarray:
    """A frame whose left half is red and right half blue, so geometry errors show."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2 :, 2] = 255
    return img


@pytest.mark.parametrize("mode", ["stretch", "center_crop", "letterbox"])
@pytest.mark.parametrize("hw", [(480, 640), (720, 1280), (64, 64), (31, 97)])
def test_every_mode_gives_the_bundle_size(mode: str, hw: tuple[int, int]) -> None:
    out = FramePrep((64, 64), mode).prepare(_camera(*hw))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_same_size_without_roi_is_the_identity() -> None:
    img = _camera(64, 64)
    assert FramePrep((64, 64), "letterbox").prepare(img) is img


def test_stretch_keeps_the_whole_field_of_view() -> None:
    out = FramePrep((64, 64), "stretch").prepare(_camera(480, 640))
    assert out[:, :30, 0].min() > 200 and out[:, 34:, 2].min() > 200


def test_letterbox_pads_top_and_bottom_of_a_wide_image() -> None:
    out = FramePrep((64, 64), "letterbox").prepare(_camera(360, 640))  # 16:9 -> 64x36
    assert out[:13].max() == 0 and out[-13:].max() == 0  # (64 - 36) / 2 = 14 rows of padding
    assert out[32, 5, 0] > 200 and out[32, 60, 2] > 200


def test_center_crop_drops_the_sides_of_a_wide_image() -> None:
    img = _camera(480, 640)
    img[:, :60] = 0  # a black strip inside the 80 px that a 4:3 -> square crop drops per side
    out = FramePrep((64, 64), "center_crop").prepare(img)
    assert out[:, :32, 0].min() > 150  # the strip is gone: the left half is all red


def test_roi_is_applied_before_the_resize() -> None:
    img = _camera(480, 640)
    out = FramePrep((64, 64), roi=(0, 0, 320, 480)).prepare(img)  # only the red half
    assert out[..., 0].min() > 200 and out[..., 2].max() == 0


def test_roi_outside_the_image_is_a_named_error() -> None:
    with pytest.raises(FramePrepError, match="does not fit in the 640x480"):
        FramePrep((64, 64), roi=(600, 0, 100, 100)).prepare(_camera(480, 640))


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d", [0, 0, 0, 5], [-1, 0, 4, 4]])
def test_bad_roi_values_are_refused(bad) -> None:
    with pytest.raises(FramePrepError):
        parse_roi(bad)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(FramePrepError, match="stretch|center_crop|letterbox"):
        FramePrep((64, 64), "zoom")


@pytest.mark.parametrize("mode", ["stretch", "center_crop", "letterbox"])
def test_map_back_aligns_with_the_camera(mode: str) -> None:
    """prepare -> map_back of the frame itself lands its colours where the camera had them."""
    prep = FramePrep((64, 64), mode)
    img = _camera(360, 640)
    back = prep.map_back(prep.prepare(img), (360, 640))
    assert back.shape == (360, 640, 3)
    assert back[180, 250, 0] > 200 and back[180, 390, 2] > 200
    if mode == "center_crop":  # the sides were never seen
        assert tuple(back[180, 5]) == UNSEEN and tuple(back[180, 635]) == UNSEEN


def test_map_back_paints_outside_the_roi_as_unseen() -> None:
    prep = FramePrep((64, 64), roi=(100, 50, 200, 100))
    back = prep.map_back(np.full((64, 64, 3), 7, np.uint8), (480, 640))
    assert tuple(back[0, 0]) == UNSEEN and tuple(back[100, 200]) == (7, 7, 7)


def test_import_bag_prepares_frames_like_the_node(tmp_path) -> None:
    """`import-bag --image-size 16x16 --image-resize letterbox`: the dataset holds what the node
    will feed the monitor, masks included (calibration must see the same pixels)."""
    import dataclasses

    from world_monitor.cli import main
    from world_monitor.data.bag import export_episode_bag
    from world_monitor.data.dataset import EpisodeDataset
    from world_monitor.data.episode import Episode, EpisodeMeta

    frames = np.stack([_camera(24, 32)] * 6)
    mask = np.zeros((6, 24, 32), bool)
    mask[:, :, :16] = True
    meta = EpisodeMeta(scenario="cam", seed=0, fps=10.0, success=True)
    ep = Episode(frames, np.zeros((6, 4), np.float32), np.arange(6) / 10.0, meta)
    ep = dataclasses.replace(ep, shift_mask=mask)
    bag = export_episode_bag(ep, tmp_path / "bag", horizon=1)
    rc = main(
        ["import-bag", str(bag), "--out", str(tmp_path / "ds"), "--split", "train",
         "--image-size", "16x16", "--image-resize", "letterbox", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    ds = EpisodeDataset(tmp_path / "ds")
    got = ds.load(ds.index[0].id)
    expect = FramePrep((16, 16), "letterbox").prepare(frames[0])
    assert got.frames.shape == (6, 16, 16, 3) and np.array_equal(got.frames[0], expect)
    assert got.shift_mask is not None and got.shift_mask.shape == (6, 16, 16)
    assert got.shift_mask[0, 8, 2] and not got.shift_mask[0, 8, 14]  # left half, letterboxed
    assert (
        main(["import-bag", str(bag), "--out", str(tmp_path / "x"), "--crop-roi", "0,0,4,4"]) == 2
    )
