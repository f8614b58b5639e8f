"""Flows only wire tasks: every function in ``galaxy_morphology/flows`` stays short (docstring aside)."""

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
                lines = (node.end_lineno or node.lineno) - node.lineno + 1 - docstring_lines(node)
                if lines > MAX_LINES:
                    long.append(f"{path.name}:{node.name} has {lines} lines")
    assert not long, "move the logic into tasks or pure functions: " + "; ".join(long)


def docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of a function's docstring: the parameter descriptions Prefect's UI shows, not logic."""
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return (first.end_lineno or first.lineno) - first.lineno + 1
    return 0
