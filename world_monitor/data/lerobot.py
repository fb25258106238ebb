"""Local LeRobot datasets (the on-disk layouts v2.0/v2.1 and v3.0) read as our Episodes.

Why: most robot-learning teams keep their demonstrations as LeRobot datasets (``meta/info.json``,
parquet tables, one mp4 per camera per episode in v2.x, many episodes per mp4 in v3.0). A team
must be able to train and calibrate a monitor on those without re-recording them as bags.

Why not the ``lerobot`` library's own dataset class: the newest lerobot that installs on Python
3.11 (0.4.4) requires ``torch<2.11`` (and ``diffusers<0.36``), and this project pins
``torch==2.13.0`` -- the two cannot share an environment. This module reads the documented layout
with the libraries lerobot itself uses for it (pyarrow for parquet, PyAV/FFmpeg for video), so
nothing is fetched and the dataset is never modified. Install with ``pip install
world_monitor[lerobot]``.

Mapping: one LeRobot episode -> one Episode. ``frames`` are the chosen camera (an ``image`` or
``video`` feature), ``actions[t]`` the chosen action feature at frame ``t`` (LeRobot records the
command issued at each frame, which is our "action executed between frame t and t+1"), stamps
the ``timestamp`` column. Chunks are built from these actions with the bundle's horizon at
training time, as for bags. ``success`` comes from a ``next.success`` column when the dataset has
one, else from ``--labels`` (default true: demonstrations).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.episode import Episode, EpisodeMeta

__all__ = ["LeRobotError", "LeRobotEpisode", "LeRobotSource", "lerobot_sources"]

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
MAX_INFO_BYTES = 4 * 1024 * 1024


class LeRobotError(ValueError):
    """A LeRobot dataset that cannot be read as asked; the message names the file or key."""


def _need(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise LeRobotError(
            f"reading LeRobot datasets needs {module.split('.')[0]}: "
            "pip install 'world_monitor[lerobot]'"
        ) from None


@dataclass(frozen=True)
class LeRobotEpisode:
    """Where one episode's rows and video live."""

    index: int
    length: int
    data_file: Path
    tasks: tuple[str, ...]
    #: camera key -> (mp4 path, first timestamp of this episode inside the file)
    videos: dict[str, tuple[Path, float]]


class LeRobotSource:
    """A local LeRobot dataset directory: its metadata, cameras and episodes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise LeRobotError(f"{self.root}: not a LeRobot dataset (no meta/info.json)")
        if info_path.stat().st_size > MAX_INFO_BYTES:
            raise LeRobotError(f"{info_path}: larger than {MAX_INFO_BYTES} bytes")
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LeRobotError(f"{info_path}: not valid JSON ({exc})") from None
        self.version = str(self.info.get("codebase_version", ""))
        if self.version not in SUPPORTED_VERSIONS:
            raise LeRobotError(
                f"{info_path}: codebase_version {self.version!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_VERSIONS)})"
            )
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise LeRobotError(f"{info_path}: missing {key!r}")
        self.fps = float(self.info["fps"])
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise LeRobotError(f"{info_path}: fps must be positive, got {self.info['fps']!r}")
        self.features: dict[str, dict[str, Any]] = dict(self.info["features"])

    @property
    def cameras(self) -> list[str]:
        """Feature keys that hold images (``image`` or ``video`` dtype)."""
        return [k for k, f in self.features.items() if f.get("dtype") in ("image", "video")]

    def camera(self, key: str | None) -> str:
        """``key`` checked against the dataset's cameras; ``None`` = the only one there is."""
        cams = self.cameras
        if key is None:
            if len(cams) != 1:
                raise LeRobotError(
                    f"{self.root}: {len(cams)} cameras ({', '.join(cams) or 'none'}); "
                    "choose one with --camera"
                )
            return cams[0]
        if key not in cams:
            raise LeRobotError(
                f"{self.root}: no camera {key!r}; cameras: {', '.join(cams) or 'none'}"
            )
        return key

    def action_key(self, key: str) -> str:
        feat = self.features.get(key)
        if feat is None or feat.get("dtype") not in ("float32", "float64"):
            numeric = [
                k for k, f in self.features.items() if f.get("dtype") in ("float32", "float64")
            ]
            raise LeRobotError(
                f"{self.root}: no float action feature {key!r}; float features: "
                f"{', '.join(numeric) or 'none'}"
            )
        return key

    def episodes(self) -> list[LeRobotEpisode]:
        """Every episode, in index order (v3.0: ``meta/episodes/*/*.parquet``; v2.x:
        ``meta/episodes.jsonl`` with one parquet and one mp4 per episode)."""
        rows = self._episode_rows_v3() if self.version == "v3.0" else self._episode_rows_v2()
        return sorted(rows, key=lambda e: e.index)

    def _episode_rows_v3(self) -> Iterator[LeRobotEpisode]:
        pq = _need("pyarrow.parquet")
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise LeRobotError(f"{self.root}: no meta/episodes/chunk-*/file-*.parquet")
        video_tpl = self.info.get("video_path")
        for path in files:
            for row in pq.read_table(path).to_pylist():
                try:
                    data = self.root / self.info["data_path"].format(
                        chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
                    )
                    videos = {}
                    for cam in self.cameras:
                        if self.features[cam]["dtype"] != "video":
                            continue
                        mp4 = self.root / str(video_tpl).format(
                            video_key=cam,
                            chunk_index=row[f"videos/{cam}/chunk_index"],
                            file_index=row[f"videos/{cam}/file_index"],
                        )
                        videos[cam] = (mp4, float(row[f"videos/{cam}/from_timestamp"]))
                    yield LeRobotEpisode(
                        index=int(row["episode_index"]),
                        length=int(row["length"]),
                        data_file=data,
                        tasks=tuple(row.get("tasks") or ()),
                        videos=videos,
                    )
                except KeyError as exc:
                    raise LeRobotError(f"{path}: episode row lacks column {exc}") from None

    def _episode_rows_v2(self) -> Iterator[LeRobotEpisode]:
        path = self.root / "meta" / "episodes.jsonl"
        if not path.is_file():
            raise LeRobotError(f"{self.root}: no meta/episodes.jsonl")
        chunk = int(self.info.get("chunks_size", 1000))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                idx = int(row["episode_index"])
                fields = {"episode_chunk": idx // chunk, "episode_index": idx}
                videos = {
                    cam: (
                        self.root
                        / str(self.info.get("video_path")).format(video_key=cam, **fields),
                        0.0,
                    )
                    for cam in self.cameras
                    if self.features[cam]["dtype"] == "video"
                }
                yield LeRobotEpisode(
                    index=idx,
                    length=int(row["length"]),
                    data_file=self.root / self.info["data_path"].format(**fields),
                    tasks=tuple(row.get("tasks") or ()),
                    videos=videos,
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise LeRobotError(f"{path}:{n}: bad episode row ({exc})") from None

    def load(
        self,
        ep: LeRobotEpisode,
        *,
        camera: str,
        action_key: str = "action",
        stride: int = 1,
    ) -> tuple[Episode, dict[str, Any]]:
        """Episode ``ep`` as an :class:`Episode` (every ``stride``-th frame) and a report."""
        pq = _need("pyarrow.parquet")
        pc = _need("pyarrow.compute")
        if not ep.data_file.is_file():
            raise LeRobotError(f"episode {ep.index}: data file {ep.data_file} is missing")
        feat = self.features[camera]
        columns = ["episode_index", "frame_index", "timestamp", action_key]
        columns += [camera] if feat["dtype"] == "image" else []
        columns += ["next.success"] if "next.success" in self.features else []
        try:
            table = pq.read_table(ep.data_file, columns=columns)
        except Exception as exc:  # pyarrow raises several types for bad files/columns
            raise LeRobotError(f"{ep.data_file}: {exc}") from None
        table = table.filter(pc.equal(table["episode_index"], ep.index))
        table = table.sort_by("frame_index")
        if table.num_rows == 0:
            raise LeRobotError(f"episode {ep.index}: no rows in {ep.data_file}")
        if table.num_rows != ep.length:
            raise LeRobotError(
                f"episode {ep.index}: {table.num_rows} rows in {ep.data_file}, "
                f"meta says length {ep.length}"
            )
        keep = np.arange(0, table.num_rows, stride)
        table = table.take(keep)
        stamps = np.asarray(table["timestamp"].to_numpy(zero_copy_only=False), dtype=np.float64)
        actions = _matrix(table[action_key], f"episode {ep.index}: {action_key}")
        if feat["dtype"] == "image":
            frames = np.stack([_decode_image(v, self.root) for v in table[camera].to_pylist()])
        else:
            mp4, offset = ep.videos[camera]
            frames = decode_video_frames(mp4, offset + stamps, tolerance=0.4 / self.fps)
        success = True
        if "next.success" in table.column_names:
            success = bool(np.any(table["next.success"].to_numpy(zero_copy_only=False)))
        meta = EpisodeMeta(
            scenario=str(self.info.get("robot_type") or self.root.name),
            seed=ep.index,
            fps=self.fps / stride,
            success=success,
            policy="recorded",
            extra={
                "source": "lerobot",
                "lerobot": {
                    "root": str(self.root),
                    "episode_index": ep.index,
                    "camera": camera,
                    "action_key": action_key,
                    "tasks": list(ep.tasks),
                    "stride": stride,
                },
            },
        )
        episode = Episode(frames, actions.astype(np.float32), stamps, meta)
        report = {"frames": int(len(frames)), "of": int(ep.length), "stride": stride}
        return episode, report


def _matrix(column: Any, what: str) -> np.ndarray:
    values = column.to_pylist()
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise LeRobotError(f"{what}: rows of different lengths") from None
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2 or not np.all(np.isfinite(out)):
        raise LeRobotError(f"{what}: expected a finite vector per frame, got shape {out.shape}")
    return out


def _decode_image(value: Any, root: Path) -> np.ndarray:
    """One ``image`` cell: ``{"bytes": png/jpeg, "path": ...}`` (HF datasets' Image feature)."""
    from PIL import Image

    data = value.get("bytes") if isinstance(value, dict) else None
    if data is None and isinstance(value, dict) and value.get("path"):
        path = root / value["path"]
        if not path.is_file():
            raise LeRobotError(f"image {value['path']!r} is neither embedded nor under {root}")
        data = path.read_bytes()
    if data is None:
        raise LeRobotError("an image cell holds neither bytes nor a path")
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_video_frames(path: Path, times: np.ndarray, *, tolerance: float) -> np.ndarray:
    """RGB frames of ``path`` at ``times`` (seconds in the file), each the decoded frame nearest
    its time; a time with no frame within ``tolerance`` is an error (a video shorter than its
    table, or a wrong fps) rather than a silently repeated frame."""
    av = _need("av")
    if not path.is_file():
        raise LeRobotError(f"video {path} is missing")
    want = np.asarray(times, dtype=np.float64)
    best: list[np.ndarray | None] = [None] * len(want)
    gap = np.full(len(want), np.inf)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            start = max(float(want.min()) - 1.0, 0.0)
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if t > want.max() + tolerance:
                    break
                near = np.abs(want - t)
                hit = np.flatnonzero((near <= tolerance) & (near < gap))
                if hit.size:
                    rgb = frame.to_ndarray(format="rgb24")
                    for i in hit:
                        best[i], gap[i] = rgb, near[i]
    except av.error.FFmpegError as exc:
        raise LeRobotError(f"video {path}: {exc}") from None
    missing = [float(want[i]) for i, b in enumerate(best) if b is None]
    if missing:
        raise LeRobotError(
            f"video {path}: no frame within {tolerance * 1e3:.0f} ms of {len(missing)} "
            f"timestamp(s), first {missing[0]:.3f} s"
        )
    return np.stack(best)  # type: ignore[arg-type]


def lerobot_sources(
    root: str | Path,
    *,
    camera: str | None = None,
    action_key: str = "action",
    fps: float | None = None,
    episodes: Sequence[int] | None = None,
) -> list[Any]:
    """:class:`~world_monitor.data.recorded.EpisodeSource` per episode of the dataset ``root``
    (ids ``<dataset>_episode_000012``; a labels row may name ``episode_000012``, ``12`` or the
    id). ``fps`` below the dataset's keeps every n-th frame (n must be a whole number)."""
    from world_monitor.data.recorded import EpisodeSource

    src = LeRobotSource(root)
    cam = src.camera(camera)
    act = src.action_key(action_key)
    stride = 1
    if fps is not None:
        ratio = src.fps / float(fps)
        stride = round(ratio)
        if fps <= 0 or stride < 1 or abs(ratio - stride) > 1e-6:
            raise LeRobotError(
                f"--fps {fps:g}: the dataset records at {src.fps:g} Hz; choose {src.fps:g} "
                "divided by a whole number"
            )
    rows = src.episodes()
    if episodes is not None:
        chosen = set(episodes)
        unknown = chosen - {r.index for r in rows}
        if unknown:
            raise LeRobotError(f"{src.root}: no episode(s) {sorted(unknown)[:10]}")
        rows = [r for r in rows if r.index in chosen]
    prefix = "".join(c if c.isalnum() or c in "-_." else "_" for c in src.root.name) or "lerobot"
    out = []
    for ep in rows:
        name = f"episode_{ep.index:06d}"
        out.append(
            EpisodeSource(
                episode_id=f"{prefix}_{name}",
                label_keys=(name, str(ep.index), f"{prefix}_{name}"),
                load=lambda ep=ep: src.load(ep, camera=cam, action_key=act, stride=stride),
                name=f"{src.root}#{ep.index}",
            )
        )
    return out
