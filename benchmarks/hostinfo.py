"""Host facts every benchmark prints next to its numbers (the machines are shared)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_model", "load_avg"]


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
