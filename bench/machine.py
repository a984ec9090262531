"""What the benchmarks report about the machine they ran on (shared by bench/*.py)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1/5/15-minute load: a busy machine explains a slow run."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None
