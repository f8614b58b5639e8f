"""The champion helper leaves MLflow's process-wide URIs as it found them."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.serving.champion import tracking_env


def test_tracking_env_leaves_no_registry_uri_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    mlflow.set_registry_uri(None)
    first, second = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
    with tracking_env(first, tmp_path / "artifacts"):
        mlflow.set_registry_uri(first)  # what the project's Registry does for MLflow's fluent API
    MlflowClient(second).create_registered_model("galaxy-morphology")
    assert MlflowClient(second, registry_uri=second).get_registered_model("galaxy-morphology")
    assert MlflowClient(first, registry_uri=first).search_registered_models() == []
