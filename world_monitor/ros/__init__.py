"""world_monitor.ros: the ROS 2 side of the monitor.

* :mod:`world_monitor.ros.convert` -- message <-> numpy and message builders (duck-typed; no rclpy,
  also used by offline replay),
* :mod:`world_monitor.ros.params` -- the node's parameters and their validation (no rclpy),
* :mod:`world_monitor.ros.node` -- ``world_monitor_node`` (the only module importing rclpy).

Nothing is imported here, so ``import world_monitor.ros.convert`` works without ROS 2.
"""
