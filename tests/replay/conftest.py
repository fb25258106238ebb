"""Fixtures for replay tests: synthetic episodes -> rosbag2 bags, and the fake monitor.

Frames are uniform grey; the fake monitor's risk is their brightness / 255, so a "shift"
episode is one whose frames turn bright at ``onset``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from world_monitor.data.bag import export_episode_bag
from world_monitor.data.bag.codec import get_store, ns_to_time
from world_monitor.data.episode import Episode, EpisodeMeta


def _load_fakes():
    name = "world_monitor_test_fakes"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "ros" / "fakes.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fakes = _load_fakes()

HW = (16, 16)
FPS = 10.0


def make_episode(length: int = 20, onset: int | None = None, action_dim: int = 4) -> Episode:
    """Dark frames (risk ~0.1); from ``onset`` on, bright frames (risk ~0.9)."""
    frames = np.full((length, *HW, 3), 25, np.uint8)
    if onset is not None:
        frames[onset:] = 230
    actions = np.tile(np.linspace(-0.1, 0.1, action_dim, dtype=np.float32), (length, 1))
    stamps = 100.0 + np.arange(length, dtype=np.float64) / FPS
    meta = EpisodeMeta(
        scenario="synthetic",
        seed=0,
        fps=FPS,
        success=onset is None,
        shift=None if onset is None else "brightness",
        severity=None if onset is None else 1.0,
        shift_onset=onset,
    )
    return Episode(frames=frames, actions=actions, stamps=stamps, meta=meta)


@pytest.fixture
def fake_monitor():
    """Factory: a fresh fake monitor (horizon 1 so exported chunks are never truncated)."""

    def make(**kw):
        kw.setdefault("horizon", 1)
        kw.setdefault("image_size", HW)
        return fakes.FakeMonitor(**kw)

    return make


@pytest.fixture
def make_bag(tmp_path):
    """Factory: export an episode as a bag under tmp_path; returns the bag directory."""
    counter = iter(range(1000))

    def make(episode: Episode | None = None, name: str | None = None, **kw) -> Path:
        kw.setdefault("horizon", 1)
        path = tmp_path / (name or f"bag{next(counter)}")
        return export_episode_bag(episode if episode is not None else make_episode(), path, **kw)

    return make


def write_custom_bag(
    path,
    n=12,
    *,
    encoding="rgb8",
    action_dim: int | Sequence[int] = 4,
    stamps=None,
    with_actions=True,
    extra_topic=True,
):
    """Images (any encoding) + Float32MultiArray chunks [1, A] + an unrelated topic, 10 Hz;
    ``action_dim`` is A, or one A per message (a bag with some odd chunks)."""
    store = get_store("jazzy")
    t = store.types
    stamps = stamps if stamps is not None else [100.0 + i / FPS for i in range(n)]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        ci = w.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
        ca = w.add_connection("/chunk", "std_msgs/msg/Float32MultiArray", typestore=store)
        cx = w.add_connection("/odom_text", "std_msgs/msg/String", typestore=store)
        dims = [action_dim] * len(stamps) if isinstance(action_dim, int) else list(action_dim)
        for i, st in enumerate(stamps):
            log_ns = round((100.0 + i / FPS) * 1e9)
            ch, bpp = (1, 2) if encoding == "16UC1" else (3, 1)
            data = np.full(HW[0] * HW[1] * ch * bpp, 25, np.uint8)
            header = t["std_msgs/msg/Header"](
                stamp=ns_to_time(store, round(st * 1e9)), frame_id="cam"
            )
            img = t["sensor_msgs/msg/Image"](
                header=header,
                height=HW[0],
                width=HW[1],
                encoding=encoding,
                is_bigendian=0,
                step=HW[1] * ch * bpp,
                data=data,
            )
            w.write(ci, log_ns, store.serialize_cdr(img, "sensor_msgs/msg/Image"))
            if with_actions:
                dim = t["std_msgs/msg/MultiArrayDimension"]
                layout = t["std_msgs/msg/MultiArrayLayout"](
                    dim=[
                        dim(label="h", size=1, stride=dims[i]),
                        dim(label="a", size=dims[i], stride=dims[i]),
                    ],
                    data_offset=0,
                )
                arr = t["std_msgs/msg/Float32MultiArray"](
                    layout=layout, data=np.zeros(dims[i], np.float32)
                )
                w.write(ca, log_ns, store.serialize_cdr(arr, "std_msgs/msg/Float32MultiArray"))
            if extra_topic:
                s = t["std_msgs/msg/String"](data=f"tick {i}")
                w.write(cx, log_ns, store.serialize_cdr(s, "std_msgs/msg/String"))
    return path
