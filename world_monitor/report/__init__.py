"""world_monitor.report: turn a closed-loop policy-evaluation run directory into a static report.

Exports are added by the closed-loop evaluation; :mod:`world_monitor.report.html` (build) and
:mod:`world_monitor.report.serve` (loopback server) are imported by their module path.
"""

__all__: list[str] = []
