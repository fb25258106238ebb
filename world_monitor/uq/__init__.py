"""world_monitor.uq"""
