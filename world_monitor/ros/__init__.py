"""world_monitor.ros"""
