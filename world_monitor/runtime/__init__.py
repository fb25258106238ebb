"""world_monitor.runtime"""
