"""world_monitor.training"""
