"""world_monitor.report: closed-loop policy evaluation, its recordings and the static report.

Modules are imported by their path (:mod:`~world_monitor.report.evaluate_policy`,
:mod:`~world_monitor.report.html`, :mod:`~world_monitor.report.serve`, ...); this package
module only holds what several of them share and must stay import-light.
"""

__all__ = ["GATE_RGB"]

#: Colour of each enforced gate state (green / amber / red): strip borders and report plots.
GATE_RGB = {"PROCEED": (46, 160, 67), "SLOW": (230, 160, 0), "STOP": (210, 40, 40)}
