"""The machine a benchmark ran on, for the results' header."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> dict[str, str]:
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def one_line() -> str:
    """``machine: <n> cores, <cpu>, Python <version>``."""
    found = machine()
    return f"machine: {found['nproc']} cores, {found['cpu']}, Python {found['python']}"
