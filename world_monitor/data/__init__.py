"""Episodes, on-disk datasets and rosbag2 I/O (no ROS needed)."""

from world_monitor.data.dataset import (
    DatasetError,
    DatasetWriter,
    EpisodeDataset,
    EpisodeRecord,
    WindowDataset,
    assign_splits,
    build_index,
    episode_id_for,
    split_for,
)
from world_monitor.data.episode import Episode, EpisodeError, EpisodeMeta
from world_monitor.data.normalize import (
    ActionNormalizer,
    float_to_frames,
    frames_to_float,
)

__all__ = [
    "ActionNormalizer",
    "DatasetError",
    "DatasetWriter",
    "Episode",
    "EpisodeDataset",
    "EpisodeError",
    "EpisodeMeta",
    "EpisodeRecord",
    "WindowDataset",
    "assign_splits",
    "build_index",
    "episode_id_for",
    "float_to_frames",
    "frames_to_float",
    "split_for",
]
