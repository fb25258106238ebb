"""Small synthetic episodes and a raw bag writer for the data tests (no simulator needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from world_monitor.data.bag.codec import get_store, ns_to_time
from world_monitor.data.bag.integrity import seal_mcap
from world_monitor.data.episode import Episode, EpisodeMeta


def make_episode(
    seed: int = 0,
    *,
    length: int = 10,
    size: int = 16,
    action_dim: int = 4,
    shift: str | None = None,
    mask: bool = False,
    scenario: str = "pick",
    success: bool = True,
) -> Episode:
    """Random frames/actions with 10 Hz float stamps (0.1 * k is not exact in binary on purpose)."""
    rng = np.random.default_rng(seed)
    meta = EpisodeMeta(
        scenario=scenario,
        seed=seed,
        fps=10.0,
        success=success,
        shift=shift,
        severity=0.5 if shift else None,
        shift_onset=2 if shift else None,
        failure_step=None if success else length - 1,
        extra={"note": "synthetic", "values": [1, 2.5]},
    )
    return Episode(
        frames=rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
        actions=rng.normal(size=(length, action_dim)).astype(np.float32),
        stamps=np.arange(length) * 0.1 + 1000.1,
        meta=meta,
        shift_mask=(rng.random((length, size, size)) > 0.7) if mask else None,
    )


@pytest.fixture
def episode() -> Episode:
    return make_episode(1)


@pytest.fixture
def masked_episode() -> Episode:
    return make_episode(2, shift="lighting", mask=True, size=13)


@pytest.fixture(scope="session")
def store() -> Any:
    return get_store("jazzy")


class RawBag:
    """Builds standard messages and writes arbitrary (also invalid) bags for error tests."""

    def __init__(self, store: Any) -> None:
        self.s = store
        self.t = store.types

    def header(self, ns: int, frame_id: str = "camera") -> Any:
        return self.t["std_msgs/msg/Header"](stamp=ns_to_time(self.s, ns), frame_id=frame_id)

    def image(self, ns: int, arr: np.ndarray, encoding: str = "rgb8") -> Any:
        h, w = arr.shape[:2]
        flat = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
        return self.t["sensor_msgs/msg/Image"](
            header=self.header(ns),
            height=h,
            width=w,
            encoding=encoding,
            is_bigendian=0,
            step=flat.size // h,
            data=flat,
        )

    def compressed(self, ns: int, data: bytes, fmt: str = "png") -> Any:
        return self.t["sensor_msgs/msg/CompressedImage"](
            header=self.header(ns), format=fmt, data=np.frombuffer(data, np.uint8)
        )

    def trajectory(
        self, ns: int, points: Sequence[Sequence[float]], names: Sequence[str] = ()
    ) -> Any:
        empty = np.zeros(0, np.float64)
        pts = [
            self.t["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=np.asarray(p, np.float64),
                velocities=empty,
                accelerations=empty,
                effort=empty,
                time_from_start=self.t["builtin_interfaces/msg/Duration"](
                    sec=0, nanosec=(i + 1) * 100_000_000
                ),
            )
            for i, p in enumerate(points)
        ]
        return self.t["trajectory_msgs/msg/JointTrajectory"](
            header=self.header(ns), joint_names=list(names), points=pts
        )

    def float_array(self, chunk: np.ndarray) -> Any:
        dim = self.t["std_msgs/msg/MultiArrayDimension"]
        h, a = chunk.shape
        layout = self.t["std_msgs/msg/MultiArrayLayout"](
            dim=[
                dim(label="step", size=h, stride=h * a),
                dim(label="action", size=a, stride=a),
            ],
            data_offset=0,
        )
        return self.t["std_msgs/msg/Float32MultiArray"](
            layout=layout, data=np.asarray(chunk, np.float32).reshape(-1)
        )

    def write(
        self,
        path: Path,
        messages: Sequence[tuple[str, int, Any]],
        storage: str = "mcap",
        *,
        seal: bool = True,
    ) -> Path:
        """messages: (topic, log time ns, message object), written in the given order."""
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        conns: dict[str, Any] = {}
        with Writer(path, version=9, storage_plugin=plugin) as w:
            for topic, ns, msg in messages:
                if topic not in conns:
                    conns[topic] = w.add_connection(topic, msg.__msgtype__, typestore=self.s)
                w.write(conns[topic], ns, self.s.serialize_cdr(msg, msg.__msgtype__))
        if seal:  # CRCs like `ros2 bag record` writes them (rosbags leaves them 0)
            for f in path.glob("*.mcap"):
                seal_mcap(f)
        return path

    def simple(
        self,
        n: int = 5,
        *,
        size: int = 8,
        dim: int = 4,
        horizon: int = 3,
        image_fn: Callable[[int, int, np.ndarray], Any] | None = None,
        chunk_fn: Callable[[int, int, np.ndarray], Any] | None = None,
        extra: Sequence[tuple[str, int, Any]] = (),
    ) -> tuple[list[tuple[str, int, Any]], np.ndarray, np.ndarray]:
        """A valid 10 Hz image+JointTrajectory message list; *_fn(i, ns, default) may replace one."""
        rng = np.random.default_rng(7)
        frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        actions = rng.normal(size=(n + horizon, dim)).astype(np.float32)
        msgs: list[tuple[str, int, Any]] = []
        for i in range(n):
            ns = 1_000_000_000 + i * 100_000_000
            img = image_fn(i, ns, frames[i]) if image_fn else None
            msgs.append(("/cam", ns, img if img is not None else self.image(ns, frames[i])))
            chunk = actions[i : i + horizon]
            tr = chunk_fn(i, ns, chunk) if chunk_fn else None
            msgs.append(("/act", ns, tr if tr is not None else self.trajectory(ns, chunk)))
        msgs.extend(extra)
        return msgs, frames, actions[:n]


@pytest.fixture
def rawbag(store: Any) -> RawBag:
    return RawBag(store)


@pytest.fixture
def make_ep() -> Callable[..., Episode]:
    """The episode factory, as a fixture (conftest modules are not importable by name)."""
    return make_episode
