"""Write episodes as rosbag2 bags (sqlite3 or MCAP) with standard message types only.

Why: recorded episodes must open in ``ros2 bag play``, Foxglove and Rerun, and be replayed
through the monitor exactly like a live robot, so only standard messages are used:

* ``image_topic`` -- ``sensor_msgs/msg/Image`` rgb8 (or ``CompressedImage`` png/jpeg when
  ``compressed`` is set), ``header.stamp`` = episode stamp, ``header.frame_id`` = ``frame_id``.
* ``action_topic`` -- ``trajectory_msgs/msg/JointTrajectory``, one per frame, stamped like the
  frame, with one point per planned future step: ``points[i].positions = actions[t + i]`` for
  ``i < horizon``, ``time_from_start = (i + 1) / fps``. The first point is the action actually
  executed after frame t. A chunking policy always publishes ``horizon`` points, so near the
  episode end, where the episode has fewer actions left, the last action is repeated to fill the
  chunk (a consumer such as the monitor then sees well-formed chunks up to the last frame; the
  import reads only the first point, so the round trip stays exact).
* ``/world_monitor/episode_meta`` -- ``std_msgs/msg/String`` JSON (EpisodeMeta fields + exact
  float64 stamps), written once at the first frame's time, so the round trip is lossless.
* ``/world_monitor/shift_mask`` -- mono8 ``sensor_msgs/msg/Image`` (0/255) per frame, only when
  the episode has a shift mask.

Bag log times equal the header stamps. A dataset export writes one bag per episode:
``OUT/<episode_id>/`` (a rosbag2 directory with ``metadata.yaml`` and one ``.mcap``/``.db3``).
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm.auto import tqdm

from world_monitor.data.bag.codec import (
    ACTION_FIELDS,
    COMPRESSED,
    IMAGE,
    STRING,
    TRAJECTORY,
    check_action_field,
    encode_compressed,
    encode_meta,
    get_store,
    ns_to_time,
    seconds_to_ns,
)
from world_monitor.data.bag.errors import BagError
from world_monitor.data.chunks import planned_chunk
from world_monitor.data.episode import Episode

if TYPE_CHECKING:
    from world_monitor.data.dataset import EpisodeDataset

__all__ = [
    "trajectory_msg",
    "DEFAULT_ACTION_TOPIC",
    "DEFAULT_IMAGE_TOPIC",
    "DEFAULT_JOINT_NAMES",
    "MASK_TOPIC",
    "META_TOPIC",
    "export_dataset_bags",
    "export_episode_bag",
]

log = logging.getLogger(__name__)

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_ACTION_TOPIC = "/policy/action_chunk"
META_TOPIC = "/world_monitor/episode_meta"
MASK_TOPIC = "/world_monitor/shift_mask"
DEFAULT_JOINT_NAMES = ("ee_dx", "ee_dy", "ee_dz", "gripper")
_STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def _joint_names(action_dim: int, names: Sequence[str] | None) -> list[str]:
    if names is None:
        names = DEFAULT_JOINT_NAMES if action_dim == 4 else [f"a{i}" for i in range(action_dim)]
    if len(names) != action_dim:
        raise ValueError(f"joint_names: {len(names)} names for action dim {action_dim}")
    return list(names)


def export_episode_bag(
    episode: Episode,
    path: str | Path,
    *,
    storage: Literal["mcap", "sqlite3"] = "mcap",
    image_topic: str = DEFAULT_IMAGE_TOPIC,
    action_topic: str = DEFAULT_ACTION_TOPIC,
    frame_id: str = "camera",
    horizon: int = 8,
    joint_names: Sequence[str] | None = None,
    compressed: Literal["png", "jpeg"] | None = None,
    jpeg_quality: int = 95,
    distro: str = "jazzy",
    write_meta: bool = True,
    overwrite: bool = False,
    action_field: str = "positions",
    chunk_every: int | str = 1,
) -> Path:
    """Write one episode as a rosbag2 directory at ``path``; returns ``path``.

    ``chunk_every`` is how often an action chunk is published: ``1`` (default) a chunk with
    every frame (the monitor then decides on every frame), ``N`` every N frames, ``"policy"`` at
    the episode's own re-plan rate (the simulator records ``replan_every``, 4 by default) -- what
    a chunking policy's recording looks like, and what the live node decides on.

    ``action_field`` is the JointTrajectoryPoint array the chunks are written in (``effort``
    for a torque-driven arm's recording); the others are left empty.

    The bag is written to ``path.partial`` and renamed when complete, so a crash never leaves a
    bag that looks finished.
    """
    if storage not in _STORAGE:
        raise ValueError(f"storage {storage!r}: expected 'mcap' or 'sqlite3'")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    check_action_field(action_field)
    episode.validate()
    every = resolve_chunk_every(chunk_every, episode)
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise BagError(path, "exists already (pass overwrite=True to replace it)")
        shutil.rmtree(path)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    store = get_store(distro)
    t = store.types
    header_cls, image_cls = t["std_msgs/msg/Header"], t[IMAGE]
    names = _joint_names(episode.action_dim, joint_names)
    stamps_ns = [seconds_to_ns(s) for s in episode.stamps]
    if any(b <= a for a, b in itertools.pairwise(stamps_ns)):
        raise BagError(path, "episode stamps collide at nanosecond resolution")
    h, w = episode.image_size
    fps = float(episode.meta.fps)
    try:
        with Writer(tmp, version=9, storage_plugin=_STORAGE[storage]) as writer:
            img_type = IMAGE if compressed is None else COMPRESSED
            c_img = writer.add_connection(image_topic, img_type, typestore=store)
            c_act = writer.add_connection(action_topic, TRAJECTORY, typestore=store)
            c_meta = (
                writer.add_connection(META_TOPIC, STRING, typestore=store) if write_meta else None
            )
            c_mask = None
            if episode.shift_mask is not None:
                c_mask = writer.add_connection(MASK_TOPIC, IMAGE, typestore=store)
            if c_meta is not None:
                text = encode_meta(
                    episode.meta.to_dict(),
                    episode.stamps,
                    {
                        "joint_names": names,
                        "horizon": horizon,
                        "frame_id": frame_id,
                        "chunk_every": every,
                    },
                )
                msg = t[STRING](data=text)
                writer.write(c_meta, stamps_ns[0], store.serialize_cdr(msg, STRING))
            for i in range(episode.length):
                header = header_cls(stamp=ns_to_time(store, stamps_ns[i]), frame_id=frame_id)
                frame = np.asarray(episode.frames[i])
                if compressed is None:
                    msg = image_cls(
                        header=header,
                        height=h,
                        width=w,
                        encoding="rgb8",
                        is_bigendian=0,
                        step=w * 3,
                        data=np.ascontiguousarray(frame).reshape(-1),
                    )
                else:
                    data = encode_compressed(frame, compressed, jpeg_quality)
                    msg = t[COMPRESSED](
                        header=header,
                        format=compressed,
                        data=np.frombuffer(data, np.uint8),
                    )
                writer.write(c_img, stamps_ns[i], store.serialize_cdr(msg, img_type))
                if c_mask is not None:
                    mask = np.asarray(episode.shift_mask[i]).astype(np.uint8) * 255  # type: ignore[index]
                    mmsg = image_cls(
                        header=header,
                        height=h,
                        width=w,
                        encoding="mono8",
                        is_bigendian=0,
                        step=w,
                        data=mask.reshape(-1),
                    )
                    writer.write(c_mask, stamps_ns[i], store.serialize_cdr(mmsg, IMAGE))
                if i % every:
                    continue
                jmsg = trajectory_msg(
                    store,
                    header,
                    names,
                    planned_chunk(episode.actions, i, horizon),
                    fps,
                    field=action_field,
                )
                writer.write(c_act, stamps_ns[i], store.serialize_cdr(jmsg, TRAJECTORY))
    except BagError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BagError(path, f"writing failed: {type(exc).__name__}: {exc}") from exc
    _rename_storage(tmp, path)
    return path


def resolve_chunk_every(chunk_every: int | str, episode: Episode) -> int:
    """``chunk_every`` as frames: ``"policy"`` -> the episode's recorded ``replan_every``
    (1 when it has none); an int must be >= 1."""
    if chunk_every == "policy":
        return max(1, int(episode.meta.extra.get("replan_every", 1) or 1))
    try:
        every = int(chunk_every)
    except (TypeError, ValueError):
        raise ValueError(
            f"chunk_every: expected an int >= 1 or 'policy', got {chunk_every!r}"
        ) from None
    if every < 1:
        raise ValueError(f"chunk_every must be >= 1, got {every}")
    return every


def trajectory_msg(
    store: Any,
    header: Any,
    names: Sequence[str],
    chunk: np.ndarray,
    fps: float,
    *,
    field: str = "positions",
) -> Any:
    """An action chunk [H, A] as ``trajectory_msgs/JointTrajectory``: one point per action,
    values in ``field`` (the other arrays empty), ``time_from_start`` = (k + 1) / fps (the k-th
    action runs after k + 1 control periods)."""
    t = store.types
    jtp_cls = t["trajectory_msgs/msg/JointTrajectoryPoint"]
    dur_cls = t["builtin_interfaces/msg/Duration"]
    empty = np.zeros(0, dtype=np.float64)
    points = [
        jtp_cls(
            **{f: np.asarray(a, dtype=np.float64) if f == field else empty for f in ACTION_FIELDS},
            time_from_start=_duration(dur_cls, (k + 1) / fps),
        )
        for k, a in enumerate(chunk)
    ]
    return t[TRAJECTORY](header=header, joint_names=list(names), points=points)


def _duration(dur_cls: Any, seconds: float) -> Any:
    ns = seconds_to_ns(seconds)
    return dur_cls(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _rename_storage(tmp: Path, path: Path) -> None:
    """Rename ``X.partial`` to ``X``, including the storage file and metadata.yaml entries.

    MCAP files are sealed first (chunk + summary CRCs, which rosbags leaves 0), so every bag we
    write -- exports and replay outputs -- lets a reader detect corruption.
    """
    from world_monitor.data.bag.integrity import seal_mcap

    for f in tmp.iterdir():
        if f.suffix == ".mcap":
            seal_mcap(f)
        if f.stem == tmp.name and f.suffix in (".mcap", ".db3"):
            f.rename(tmp / f"{path.name}{f.suffix}")
    meta = tmp / "metadata.yaml"
    meta.write_text(meta.read_text().replace(f"{tmp.name}.", f"{path.name}."))
    tmp.rename(path)


def export_dataset_bags(
    dataset: EpisodeDataset,
    out_dir: str | Path,
    *,
    progress: bool = True,
    skip_existing: bool = True,
    **kwargs: Any,
) -> list[Path]:
    """One bag per episode: ``out_dir/<episode_id>/``. Resumable (existing bags are skipped)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(len(dataset)), desc="export bags", unit="ep", disable=not progress):
        rec = dataset.record(i)
        p = out / rec.id
        if skip_existing and (p / "metadata.yaml").exists():
            paths.append(p)
            continue
        paths.append(export_episode_bag(dataset[i], p, **kwargs))
    log.info("exported %d bags to %s", len(paths), out)
    return paths
