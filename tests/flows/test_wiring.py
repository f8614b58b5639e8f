"""Flows only wire tasks: every function in ``galaxy_morphology/flows`` stays short."""

from __future__ import annotations

import ast
from pathlib import Path

FLOWS = Path(__file__).resolve().parents[2] / "galaxy_morphology" / "flows"
MAX_LINES = 40


def test_no_flow_function_is_longer_than_forty_lines() -> None:
    long = []
    for path in sorted(FLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.name}:{node.name} has {lines} lines")
    assert not long, "move the logic into tasks or pure functions: " + "; ".join(long)
