"""world_monitor.models"""
