"""Host facts every benchmark prints next to its numbers (the machines are shared)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_model", "load_avg", "load_warning"]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform.processor() is empty on most Linux boxes)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_avg() -> str:
    """1/5/15-minute load average: a number from a shared box needs its load next to it."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def load_warning() -> str | None:
    """A warning line when the 1-minute load average exceeds the core count: the numbers of a
    run on an overloaded machine are not comparable with a quiet one."""
    cores = os.cpu_count() or 1
    one = os.getloadavg()[0]
    if one > cores:
        return (
            f"# WARNING: load average {one:.2f} > {cores} cores: other work is competing for the "
            "CPU, these numbers are unreliable (rerun on a quiet machine)"
        )
    return None
