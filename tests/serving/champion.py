"""Train a tiny champion into a throw-away MLflow store (shared by serving and classify tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.factories import raw_frame, write_snapshot

MODEL_NAME = "galaxy-morphology"
CHAMPION_URI = f"models:/{MODEL_NAME}@champion"


@dataclass(frozen=True)
class TrainedStore:
    folder: Path
    tracking_uri: str
    artifact_root: Path
    version: str


@contextmanager
def tracking_env(tracking_uri: str, artifact_root: Path) -> Iterator[None]:
    """Point MLflow and the settings at the store; restore the environment afterwards."""
    import mlflow

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "GALAXY_MLFLOW__ARTIFACT_ROOT")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ["GALAXY_MLFLOW__ARTIFACT_ROOT"] = str(artifact_root)
    try:
        yield
    finally:
        # no process-wide URI is left behind (a set registry URI would win over the tracking URI
        # given to a later MlflowClient); mlflow.set_*_uri write the environment too, so the
        # variables are restored after them
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def train_champion(folder: Path) -> TrainedStore:
    """Quick logistic training on 60 synthetic rows: registers version 1 as champion."""
    from galaxy_morphology.flows.training import training_flow

    folder.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    artifact_root = folder / "mlartifacts"
    snapshot = write_snapshot(raw_frame(n_spiral=40, n_elliptical=20, n_uncertain=5), folder / "train.csv")
    with tracking_env(tracking_uri, artifact_root):
        summary = training_flow(quick=True, families=["logistic"], snapshot=str(snapshot))
    return TrainedStore(folder, tracking_uri, artifact_root, summary.version)
