"""`import-lerobot`: a local LeRobot dataset (layouts v3.0 and v2.1, image or mp4 cameras) read
into our dataset -- frames and actions equal what was written (exactly for image cameras, to the
codec's colour rounding for video), splits and labels as for bags, and every bad dataset a
one-line error (issue 15). The recordings are the second robot's (``second_robot.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lerobot_writer import CAMERA, write_lerobot
from second_robot import PlanarArm

from world_monitor import cli
from world_monitor.data.dataset import EpisodeDataset
from world_monitor.data.lerobot import LeRobotError, LeRobotSource, lerobot_sources


@pytest.fixture(scope="module")
def episodes():
    arm = PlanarArm()
    return [arm.episode(seed, length=12 + seed) for seed in range(4)]


def _load_all(root: Path, **kwargs):
    return [src.load()[0] for src in lerobot_sources(root, **kwargs)]


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_image_camera_round_trip_is_exact(tmp_path, episodes, version) -> None:
    root = write_lerobot(tmp_path / "ds", episodes, version=version, camera_dtype="image")
    loaded = _load_all(root)
    assert len(loaded) == len(episodes)
    for got, want in zip(loaded, episodes, strict=True):
        np.testing.assert_array_equal(got.frames, want.frames)
        np.testing.assert_array_equal(got.actions, want.actions.astype(np.float32))
        np.testing.assert_allclose(got.stamps, np.arange(want.length) / 10.0, atol=1e-6)
        assert got.meta.fps == 10.0 and got.meta.scenario == "planar_arm"
        assert got.meta.extra["lerobot"]["camera"] == CAMERA


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_video_camera_frames_match_their_own_episode(tmp_path, episodes, version) -> None:
    """v3.0 concatenates all episodes in one mp4: each episode must get its own frames back
    (by ``from_timestamp``), not its neighbour's, in order."""
    root = write_lerobot(tmp_path / "ds", episodes, version=version, camera_dtype="video")
    loaded = _load_all(root)
    every = np.concatenate([e.frames for e in episodes]).astype(np.float32)
    offset = 0
    for got, want in zip(loaded, episodes, strict=True):
        assert got.frames.shape == want.frames.shape
        err = np.abs(got.frames.astype(np.float32) - want.frames)
        assert err.mean() < 1.0 and err.max() <= 8, (err.mean(), err.max())
        np.testing.assert_array_equal(got.actions, want.actions.astype(np.float32))
        # every decoded frame is nearest to the frame written at its own position
        for t, frame in enumerate(got.frames.astype(np.float32)):
            dist = np.abs(every - frame).mean(axis=(1, 2, 3))
            assert int(np.argmin(dist)) == offset + t
        offset += want.length


def test_cli_import_with_auto_split_labels_and_resize(tmp_path, episodes, capsys) -> None:
    arm = PlanarArm()
    recs = [arm.episode(s, length=14) for s in range(12)]
    recs.append(arm.episode(99, length=14, shift="lights_off", onset=5))
    root = write_lerobot(tmp_path / "arm", recs, camera_dtype="image")
    labels = tmp_path / "labels.csv"
    labels.write_text("bag,shift,onset_s,severity,success\nepisode_000012,lights_off,0.5,1,true\n")
    out = tmp_path / "imported"
    rc = cli.main(
        [
            "import-lerobot",
            str(root),
            "--out",
            str(out),
            "--split",
            "auto",
            "--labels",
            str(labels),
            "--image-size",
            "16x16",
            "--image-resize",
            "center_crop",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0 and "imported 13 episode(s)" in printed
    ds = EpisodeDataset(out)
    assert {(r.height, r.width, r.action_dim) for r in ds.index} == {(16, 16, 3)}
    shifted = [r for r in ds.index if r.shift is not None]
    assert [(r.id, r.shift, r.onset, r.split) for r in shifted] == [
        ("arm_episode_000012", "lights_off", 5, "test")
    ]
    per_split = ds.summary()["per_split"]
    assert per_split["train"] > 0 and per_split["calib"] > 0
    summary = json.loads((out / "import_summary.json").read_text())
    assert summary["imported"] == 13 and summary["labelled"] == 1


def test_fps_keeps_every_nth_frame_and_episodes_selects(tmp_path, episodes) -> None:
    root = write_lerobot(tmp_path / "ds", episodes, camera_dtype="image")
    (got,) = _load_all(root, fps=5.0, episodes=[2])
    want = episodes[2]
    np.testing.assert_array_equal(got.frames, want.frames[::2])
    np.testing.assert_array_equal(got.actions, want.actions[::2])
    assert got.meta.fps == 5.0
    with pytest.raises(LeRobotError, match="divided by a whole number"):
        lerobot_sources(root, fps=3.0)
    with pytest.raises(LeRobotError, match=r"no episode\(s\) \[7\]"):
        lerobot_sources(root, episodes=[7])


def _one_line_error(argv: list[str], capsys) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_bad_datasets_are_one_line_errors(tmp_path, episodes, capsys) -> None:
    out = str(tmp_path / "out")
    assert "no meta/info.json" in _one_line_error(
        ["import-lerobot", str(tmp_path), "--out", out], capsys
    )
    root = write_lerobot(tmp_path / "ds", episodes[:2], camera_dtype="image")
    assert "no camera 'wrist'" in _one_line_error(
        ["import-lerobot", str(root), "--out", out, "--camera", "wrist"], capsys
    )
    assert "no float action feature 'act'" in _one_line_error(
        ["import-lerobot", str(root), "--out", out, "--action-key", "act"], capsys
    )
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.images.wrist"] = dict(info["features"][CAMERA])
    (root / "meta" / "info.json").write_text(json.dumps(info))
    assert "choose one with --camera" in _one_line_error(
        ["import-lerobot", str(root), "--out", out], capsys
    )
    info["codebase_version"] = "v1.6"
    (root / "meta" / "info.json").write_text(json.dumps(info))
    assert "v1.6" in _one_line_error(["import-lerobot", str(root), "--out", out], capsys)


def test_a_video_shorter_than_its_table_fails_that_episode_by_name(tmp_path, episodes) -> None:
    root = write_lerobot(tmp_path / "ds", episodes[:2], version="v2.1", camera_dtype="video")
    from lerobot_writer import write_video

    mp4 = root / "videos" / "chunk-000" / CAMERA / "episode_000001.mp4"
    write_video(mp4, episodes[1].frames[:5], 10.0)  # 5 of its 13 frames
    sources = lerobot_sources(root)
    sources[0].load()
    with pytest.raises(LeRobotError, match="no frame within 40 ms of 8 timestamp"):
        sources[1].load()
    assert LeRobotSource(root).cameras == [CAMERA]
