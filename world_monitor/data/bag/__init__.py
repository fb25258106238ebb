"""rosbag2 I/O (sqlite3 and MCAP) through the pure-Python ``rosbags`` library: no ROS needed.

``export_episode_bag`` / ``export_dataset_bags`` write standard messages (see ``export``),
``import_episode_bag`` / ``load_episode_bag`` read them back (see ``importer`` for the
frame/action synchronisation rules), ``scan_bag`` classifies every message (used by inspect).
"""

from world_monitor.data.bag.convert import export_path, import_paths
from world_monitor.data.bag.errors import BagError
from world_monitor.data.bag.export import (
    DEFAULT_ACTION_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    MASK_TOPIC,
    META_TOPIC,
    export_dataset_bags,
    export_episode_bag,
)
from world_monitor.data.bag.importer import (
    BagImport,
    ImportReport,
    import_episode_bag,
    load_episode_bag,
)
from world_monitor.data.bag.scan import BagScan, TopicScan, scan_bag

__all__ = [
    "DEFAULT_ACTION_TOPIC",
    "DEFAULT_IMAGE_TOPIC",
    "MASK_TOPIC",
    "META_TOPIC",
    "BagError",
    "BagImport",
    "BagScan",
    "ImportReport",
    "TopicScan",
    "export_dataset_bags",
    "export_episode_bag",
    "export_path",
    "import_episode_bag",
    "import_paths",
    "load_episode_bag",
    "scan_bag",
]
