"""The layer order of ``galaxy_morphology`` (pyproject's import-linter contract) holds."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_contract_names_every_subpackage() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    named = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    package = REPO / "galaxy_morphology"
    present = {f"galaxy_morphology.{path.stem}" for path in package.iterdir() if path.name != "__init__.py"}
    present = {name for name in present if not name.endswith("__pycache__")}
    assert named == present, "every module and subpackage of galaxy_morphology has a place in the layers"


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
