"""world_monitor: a runtime safety monitor for robot policies.

The core (simulator, data, models, uncertainty, runtime) never imports rclpy; the ROS 2 node in
``world_monitor.ros`` is a thin adapter over it.
"""

__version__ = "0.8.0"
