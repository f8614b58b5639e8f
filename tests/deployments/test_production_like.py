"""Run it like production: a real `prefect server`, the work pool, `prefect deploy --all`, a worker.

Everything runs in child processes with their own PREFECT_HOME, on a free loopback port; the
server and the worker are always stopped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.factories import raw_frame, write_snapshot
from tests.servers import BIN, REPO, deploy_and_run_training, prefect_server, run

pytestmark = pytest.mark.integration


def test_deploy_all_then_a_worker_runs_the_training_deployment(tmp_path: Path) -> None:
    snapshot = write_snapshot(raw_frame(120, 60, 20, seed=5), tmp_path / "gz1.csv")
    with prefect_server(tmp_path) as env:
        env.update(
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
            GALAXY_MLFLOW__ARTIFACT_ROOT=str(tmp_path / "mlartifacts"),
            GALAXY_TRAINING__N_JOBS="1",
            GALAXY_HOME=str(REPO),
        )
        params = {"quick": True, "families": ["logistic"], "snapshot": str(snapshot)}
        deploy_and_run_training(env, params, tmp_path)

        assert "already present" in run([sys.executable, "deployments/create_work_pool.py"], env)
        listed = run([str(BIN / "prefect"), "deployment", "ls"], env)
        for name in (
            "galaxy-data",
            "galaxy-training",
            "galaxy-monitoring",
            "galaxy-classify",
            "galaxy-review",
        ):
            assert name in listed
        assert "created" in run([sys.executable, "deployments/create_review_automation.py"], env)
    registry = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert str(registry.get_model_version_by_alias("galaxy-morphology", "champion").version) == "1"
