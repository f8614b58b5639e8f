"""The serving Dockerfile, checked without a Docker engine: parsed, and linted by hadolint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from galaxy_morphology.io.model_log import requirements
from tests.dockerfiles import hadolint, instructions

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"


def test_lean_base_non_root_user_and_exec_form_command() -> None:
    parsed = instructions(DOCKERFILE)
    assert parsed[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in parsed if word == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"
    command = json.loads(next(rest for word, rest in parsed if word == "CMD"))
    assert command[:2] == ["sh", "-c"]
    assert command[2].startswith("exec uvicorn --factory galaxy_morphology.serving.app:create_app")
    assert ("EXPOSE", "8080") in parsed
    assert any(word == "HEALTHCHECK" and "/ping" in rest for word, rest in parsed)


def test_the_app_reads_the_baked_in_model_folder() -> None:
    environment = next(rest for word, rest in instructions(DOCKERFILE) if word == "ENV")
    assert 'GALAXY_SCORING_APP_CONFIG=\'{"model_folder": "/model"}\'' in environment


def test_copies_the_model_folder_and_the_package() -> None:
    parsed = instructions(DOCKERFILE)
    sources = [
        [source for source in rest.split()[:-1] if not source.startswith("--")]
        for word, rest in parsed
        if word == "COPY"
    ]
    assert sources == [
        ["${MODEL_DIR}/requirements.txt"],
        ["pyproject.toml", "README.md"],
        ["galaxy_morphology/"],
        ["${MODEL_DIR}"],
    ]


def test_requirement_filter_swaps_mlflow_for_skinny(tmp_path: Path) -> None:
    """Run the RUN step's shell filter on the requirements a logged model carries."""
    (tmp_path / "requirements.txt").write_text("\n".join(requirements()) + "\n")
    run = next(rest for word, rest in instructions(DOCKERFILE) if word == "RUN" and "mlflow_version" in rest)
    script = run.split("&& pip install")[0].replace("/tmp/", f"{tmp_path}/")
    subprocess.run(["sh", "-c", script], check=True)
    kept = (tmp_path / "runtime.txt").read_text().split()
    names = {line.split("==")[0] for line in kept}
    assert "mlflow" not in names and "matplotlib" not in names
    assert {"scikit-learn", "skops", "pandas", "numpy", "scipy"} <= names


def test_hadolint_is_clean() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
