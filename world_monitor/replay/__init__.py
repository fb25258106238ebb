"""world_monitor.replay"""
