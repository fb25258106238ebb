"""world_monitor.replay: offline rosbag2 replay through the same MonitorSession as the ROS node."""

from world_monitor.replay.fit import BundleMismatch
from world_monitor.replay.replay import (
    DIAGNOSTICS_TOPIC,
    HEATMAP_TOPIC,
    LOCK_TOPIC,
    MONITOR_TOPICS,
    RISK_TOPIC,
    ReplayResult,
    replay_bag,
)

__all__ = [
    "BundleMismatch",
    "DIAGNOSTICS_TOPIC",
    "HEATMAP_TOPIC",
    "LOCK_TOPIC",
    "MONITOR_TOPICS",
    "RISK_TOPIC",
    "ReplayResult",
    "replay_bag",
]
