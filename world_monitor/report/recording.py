"""Per-episode recordings of a closed-loop run: an MCAP for Foxglove/Rerun and an animated strip.

Why both: the MCAP is the engineer's tool (scrub the camera next to the lock, risk and heatmap
topics with the same stamps the node would publish, or ``ros2 bag play`` it); the strip
(true | predicted | confidence heatmap, bordered by the gate state) is what a report reader
looks at without installing anything.

The MCAP is a rosbag2 directory (``metadata.yaml`` + one ``.mcap``), written with ``rosbags``:

* ``/camera/image_raw`` (sensor_msgs/Image rgb8) every frame, stamp ``t / fps``;
* ``/policy/action_chunk`` (trajectory_msgs/JointTrajectory) the chunk the policy planned;
* ``/world_monitor/lock`` (std_msgs/Bool) every frame: the lock the relay enforced;
* ``/world_monitor/risk`` (std_msgs/Float32) and ``/world_monitor/heatmap`` (Image, the
  camera's header) at every decision;
* ``/world_monitor/shift_mask`` (mono8) for shifted scenarios (ground truth, for inspection).

Chunks are zstd-compressed inside the MCAP (the MCAP format's own compression).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.bag.codec import IMAGE, TRAJECTORY, get_store, seconds_to_ns
from world_monitor.data.bag.export import (
    DEFAULT_ACTION_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    DEFAULT_JOINT_NAMES,
    MASK_TOPIC,
    trajectory_msg,
)
from world_monitor.data.normalize import float_to_frames
from world_monitor.replay.replay import HEATMAP_TOPIC, LOCK_TOPIC, RISK_TOPIC
from world_monitor.report import GATE_RGB
from world_monitor.report.closed_loop import ClosedLoopResult
from world_monitor.ros.convert import (
    BOOL,
    FLOAT32,
    bool_msg,
    float32_msg,
    header_msg,
    heatmap_rgb,
    image_msg,
    rosbags_factory,
)

__all__ = ["strip_frames", "write_episode_mcap", "write_strip"]


def write_episode_mcap(result: ClosedLoopResult, path: Path, *, distro: str = "jazzy") -> Path:
    """Write ``result`` as a rosbag2 directory at ``path`` (replaced if present); returns the
    ``.mcap`` file inside it."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    store = get_store(distro)
    factory = rosbags_factory(store)
    ep = result.episode
    fps = float(ep.meta.fps)
    h, w = ep.image_size
    decisions = {d["t"]: d for d in result.decisions}
    maps = dict(result.assessments)
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    # MCAP-native zstd chunks (measured: ~6x smaller for these frames); Foxglove, Rerun and
    # ros2 bag play read them directly, unlike rosbag2's file-level compression.
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        c_img = writer.add_connection(DEFAULT_IMAGE_TOPIC, IMAGE, typestore=store)
        c_act = writer.add_connection(DEFAULT_ACTION_TOPIC, TRAJECTORY, typestore=store)
        c_lock = writer.add_connection(LOCK_TOPIC, BOOL, typestore=store)
        c_risk = writer.add_connection(RISK_TOPIC, FLOAT32, typestore=store)
        c_heat = writer.add_connection(HEATMAP_TOPIC, IMAGE, typestore=store)
        c_mask = None
        if ep.shift_mask is not None:
            c_mask = writer.add_connection(MASK_TOPIC, IMAGE, typestore=store)
        chunks = dict(result.chunks)

        def put(conn: Any, ns: int, msg: Any, msgtype: str) -> None:
            writer.write(conn, ns, store.serialize_cdr(msg, msgtype))

        for t in range(ep.length):
            stamp = t / fps
            ns = seconds_to_ns(stamp)
            header = header_msg(factory, stamp, "camera")
            put(c_img, ns, image_msg(factory, ep.frames[t], header), IMAGE)
            if c_mask is not None:
                put(c_mask, ns, _mono8(factory, ep.shift_mask[t], header), IMAGE)
            if t in chunks:
                msg = trajectory_msg(store, header, DEFAULT_JOINT_NAMES, chunks[t], fps)
                put(c_act, ns, msg, TRAJECTORY)
            d = decisions.get(t)
            if d is not None and d["risk"] is not None:
                put(c_risk, ns, float32_msg(factory, float(d["risk"])), FLOAT32)
            a = maps.get(t)
            if a is not None and a.confidence_map is not None:
                put(
                    c_heat,
                    ns,
                    image_msg(factory, heatmap_rgb(a.confidence_map, (h, w)), header),
                    IMAGE,
                )
            lock = result.steps[t]["effective"] == "STOP"
            put(c_lock, ns, bool_msg(factory, lock), BOOL)
    mcaps = sorted(path.glob("*.mcap"))
    if len(mcaps) != 1:
        raise RuntimeError(f"{path}: expected one .mcap file after writing, found {len(mcaps)}")
    return mcaps[0]


def _mono8(factory: Any, mask: np.ndarray, header: Any) -> Any:
    """A boolean mask as a mono8 ``sensor_msgs/Image`` (255 = inside)."""
    h, w = mask.shape
    data = np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1) * np.uint8(255)
    return factory.make(
        IMAGE, header=header, height=h, width=w, encoding="mono8", is_bigendian=0, step=w, data=data
    )


def _predicted_frames(monitor: Any, result: ClosedLoopResult) -> dict[int, np.ndarray]:
    """Decoded predictions per decision step: t -> uint8 [H, h, w, 3]."""
    out = {}
    for t, a in result.assessments:
        lat = getattr(a, "predicted_latents", None)
        if lat is None:
            continue
        x = np.asarray(monitor.backend.decode(np.ascontiguousarray(lat, dtype=np.float32)))
        out[t] = float_to_frames(x.transpose(0, 2, 3, 1))
    return out


def _upscale(img: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def strip_frames(monitor: Any, result: ClosedLoopResult, scale: int = 2) -> list[np.ndarray]:
    """One uint8 image per sim step: true | predicted | confidence heatmap, gate-coloured border.

    "Predicted" at step t is what the newest decision *before* t predicted for frame t (with its
    C³ heatmap for that predicted step and the alert box); blank (grey) where nothing covers t.
    """
    ep = result.episode
    h, w = ep.image_size
    preds = _predicted_frames(monitor, result)
    maps = dict(result.assessments)
    grey = np.full((h, w, 3), 96, np.uint8)
    frames = []
    last: int | None = None
    for t in range(ep.length):
        pred, heat = grey, grey
        if last is not None and last in preds and 0 <= t - last - 1 < len(preds[last]):
            i = t - last - 1
            pred = preds[last][i]
            conf = maps[last].confidence_map
            heat = heatmap_rgb(conf[i : i + 1], (h, w))
            box = maps[last].box
            if box is not None:
                heat = _draw_box(heat, box)
        row = np.concatenate([ep.frames[t], pred, heat], axis=1)
        colour = GATE_RGB.get(result.steps[t]["effective"], (0, 0, 0))
        frames.append(_framed(_upscale(row, scale), colour))
        if t in maps:
            last = t
    return frames


def _framed(img: np.ndarray, colour: tuple[int, int, int], width: int = 4) -> np.ndarray:
    """``img`` inside a ``width``-px frame of ``colour``."""
    h, w = img.shape[:2]
    out = np.empty((h + 2 * width, w + 2 * width, 3), np.uint8)
    out[...] = colour
    out[width:-width, width:-width] = img
    return out


def _draw_box(img: np.ndarray, box: Any) -> np.ndarray:
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).rectangle(
        [x0 * (w - 1), y0 * (h - 1), x1 * (w - 1), y1 * (h - 1)], outline=(255, 255, 255)
    )
    return np.asarray(pil)


def write_strip(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """Animated WebP of ``frames`` at the episode's frame rate (loops forever).

    WebP rather than GIF: on one 50-frame 392x136 strip (a one-off Pillow comparison) 109 KB
    vs 828 KB for the GIF, whose palette also bands the heatmap; every current browser plays it.
    """
    from PIL import Image

    if not frames:
        raise ValueError("write_strip: no frames")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=0,
        quality=80,
        method=4,
    )
    return path
