"""world_monitor.report"""
