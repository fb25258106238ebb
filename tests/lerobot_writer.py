"""Write small LeRobot datasets (layouts v3.0 and v2.1) from our Episodes, for the import tests.

Why our own writer: lerobot's ``LeRobotDataset.create`` cannot be installed beside torch 2.13
(``world_monitor/data/lerobot.py`` says why), so the tests write the documented layout the way
lerobot 0.4 does -- ``meta/info.json`` with the ``features`` table, per-frame parquet rows
(``action``, ``timestamp``, ``frame_index``, ``episode_index``, ``index``, ``task_index``),
``image`` cells as ``{bytes, path}`` structs, v3.0 episode rows in
``meta/episodes/chunk-000/file-000.parquet`` with ``dataset_from_index`` / ``videos/<key>/...``
columns and several episodes concatenated in one mp4, v2.1 ``meta/episodes.jsonl`` with one
parquet and one mp4 per episode.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from world_monitor.data.episode import Episode

CAMERA = "observation.images.top"


def _features(ep: Episode, camera_dtype: str, fps: float) -> dict:
    h, w = ep.image_size
    cam = {"dtype": camera_dtype, "shape": [h, w, 3], "names": ["height", "width", "channels"]}
    if camera_dtype == "video":
        cam["info"] = {"video.fps": fps, "video.codec": "h264", "video.pix_fmt": "yuv444p"}
    return {
        CAMERA: cam,
        "action": {"dtype": "float32", "shape": [ep.action_dim], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def _rows(ep: Episode, idx: int, start: int, fps: float, camera_dtype: str) -> dict:
    n = ep.length
    cols = {
        "action": pa.array(list(ep.actions.astype(np.float32)), type=pa.list_(pa.float32())),
        "timestamp": pa.array(np.arange(n, dtype=np.float32) / np.float32(fps)),
        "frame_index": pa.array(np.arange(n, dtype=np.int64)),
        "episode_index": pa.array(np.full(n, idx, dtype=np.int64)),
        "index": pa.array(np.arange(start, start + n, dtype=np.int64)),
        "task_index": pa.array(np.zeros(n, dtype=np.int64)),
    }
    if camera_dtype == "image":
        cols[CAMERA] = pa.array(
            [{"bytes": _png(f), "path": f"frame_{idx}_{t}.png"} for t, f in enumerate(ep.frames)],
            type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        )
    return cols


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """H.264 at qp 0 in yuv444p: near-lossless (colour conversion rounding only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _info(version: str, episodes: Sequence[Episode], camera_dtype: str, fps: float) -> dict:
    info = {
        "codebase_version": version,
        "robot_type": "planar_arm",
        "total_episodes": len(episodes),
        "total_frames": sum(e.length for e in episodes),
        "total_tasks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "features": _features(episodes[0], camera_dtype, fps),
    }
    if version == "v3.0":
        info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        info["video_path"] = (
            "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
            if camera_dtype == "video"
            else None
        )
    else:
        info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        info["video_path"] = (
            "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
            if camera_dtype == "video"
            else None
        )
    return info


def write_lerobot(
    root: Path,
    episodes: Sequence[Episode],
    *,
    version: str = "v3.0",
    camera_dtype: str = "image",
    fps: float = 10.0,
) -> Path:
    """``episodes`` as a LeRobot dataset at ``root`` (layout ``version``, camera ``image`` or
    ``video``); returns ``root``."""
    (root / "meta").mkdir(parents=True, exist_ok=True)
    info = _info(version, episodes, camera_dtype, fps)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    if version == "v3.0":
        _write_v3(root, episodes, camera_dtype, fps)
    else:
        _write_v2(root, episodes, camera_dtype, fps)
    return root


def _write_v3(root: Path, episodes: Sequence[Episode], camera_dtype: str, fps: float) -> None:
    tables, rows, start, t0 = [], [], 0, 0.0
    for i, ep in enumerate(episodes):
        tables.append(pa.table(_rows(ep, i, start, fps, camera_dtype)))
        row = {
            "episode_index": i,
            "tasks": ["move the arm"],
            "length": ep.length,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": start,
            "dataset_to_index": start + ep.length,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        if camera_dtype == "video":
            row |= {
                f"videos/{CAMERA}/chunk_index": 0,
                f"videos/{CAMERA}/file_index": 0,
                f"videos/{CAMERA}/from_timestamp": t0,
                f"videos/{CAMERA}/to_timestamp": t0 + ep.length / fps,
            }
        rows.append(row)
        start += ep.length
        t0 += ep.length / fps
    data = root / "data" / "chunk-000" / "file-000.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), data)
    meta = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    meta.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), meta)
    pq.write_table(
        pa.table({"task_index": [0], "task": ["move the arm"]}), root / "meta" / "tasks.parquet"
    )
    if camera_dtype == "video":
        frames = np.concatenate([ep.frames for ep in episodes])
        write_video(root / "videos" / CAMERA / "chunk-000" / "file-000.mp4", frames, fps)


def _write_v2(root: Path, episodes: Sequence[Episode], camera_dtype: str, fps: float) -> None:
    lines, start = [], 0
    for i, ep in enumerate(episodes):
        data = root / "data" / "chunk-000" / f"episode_{i:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(_rows(ep, i, start, fps, camera_dtype)), data)
        if camera_dtype == "video":
            mp4 = root / "videos" / "chunk-000" / CAMERA / f"episode_{i:06d}.mp4"
            write_video(mp4, ep.frames, fps)
        lines.append(json.dumps({"episode_index": i, "tasks": ["move"], "length": ep.length}))
        start += ep.length
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    (root / "meta" / "tasks.jsonl").write_text('{"task_index": 0, "task": "move"}\n')
