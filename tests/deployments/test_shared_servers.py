"""The team setup: Prefect server and MLflow tracking server, both on one real PostgreSQL.

PostgreSQL (Debian's package) runs in a temporary data directory on a free loopback port with
two databases; ``mlflow server`` uses one as its backend store and serves artifacts from a
folder; ``prefect server start`` uses the other. The training deployment then runs on a
process worker exactly as in production, pointed at both servers by environment only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.factories import raw_frame, write_snapshot
from tests.servers import (
    REPO,
    Postgres,
    deploy_and_run_training,
    mlflow_server,
    postgres_server,
    prefect_server,
    run,
)

pytestmark = pytest.mark.integration

MODEL = "galaxy-morphology"


@dataclass(frozen=True)
class Stack:
    postgres: Postgres
    mlflow_uri: str
    artifacts: Path
    prefect_env: dict[str, str]
    workdir: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    artifacts = workdir / "served-artifacts"
    with (
        postgres_server(("mlflow", "prefect")) as postgres,
        mlflow_server(postgres.url("mlflow"), artifacts, workdir) as mlflow_uri,
        prefect_server(workdir, postgres.url("prefect", driver="postgresql+asyncpg")) as prefect_env,
    ):
        yield Stack(postgres, mlflow_uri, artifacts, prefect_env, workdir)


@pytest.fixture(scope="module")
def trained(stack: Stack) -> Stack:
    """One quick training deployment run by a worker against both servers."""
    snapshot = write_snapshot(raw_frame(120, 60, 20, seed=5), stack.workdir / "gz1.csv")
    env = {
        **stack.prefect_env,
        "MLFLOW_TRACKING_URI": stack.mlflow_uri,
        "GALAXY_TRAINING__N_JOBS": "1",
        "GALAXY_HOME": str(REPO),
    }
    params = {"quick": True, "families": ["logistic", "knn"], "snapshot": str(snapshot)}
    deploy_and_run_training(env, params, stack.workdir)
    return stack


def test_the_champion_is_registered_on_the_tracking_server(trained: Stack) -> None:
    registry = MlflowClient(trained.mlflow_uri)
    champion = registry.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    assert champion.tags["gate.decision"] == "champion"
    assert champion.tags["galaxy.family"] in ("logistic", "knn", "soft_vote")
    run = registry.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert "test_f1_macro" in run.data.metrics
    assert run.data.tags["galaxy.trigger"] == "deployment"
    assert run.info.run_name.startswith("training-deployment-quick-")


def test_the_records_live_in_postgresql(trained: Stack) -> None:
    pg = trained.postgres
    assert pg.query("mlflow", "SELECT name FROM registered_models") == [(MODEL,)]
    assert pg.query("mlflow", "SELECT alias, version FROM registered_model_aliases") == [("champion", 1)]
    flow_runs = pg.query(
        "prefect",
        "SELECT flow.name, flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id",
    )
    assert ("galaxy-training", "COMPLETED") in flow_runs
    deployments = {name for (name,) in pg.query("prefect", "SELECT name FROM deployment")}
    assert {"galaxy-training", "galaxy-monitoring", "galaxy-classify", "galaxy-review"} <= deployments


def test_artifacts_are_stored_by_the_server_not_the_client(trained: Stack) -> None:
    stored = {path.name for path in trained.artifacts.rglob("*") if path.is_file()}
    assert {"MLmodel", "confusion_matrix.png", "roc_curve.png"} <= stored, sorted(stored)


def test_a_fresh_process_loads_the_champion_from_the_server(trained: Stack, tmp_path: Path) -> None:
    rows = raw_frame(3, 3, 0, seed=9)
    rows.to_parquet(tmp_path / "rows.parquet")
    script = (
        "import json, sys\n"
        "import mlflow, pandas as pd\n"
        "model = mlflow.pyfunc.load_model('models:/galaxy-morphology@champion')\n"
        "print(json.dumps(model.predict(pd.read_parquet(sys.argv[1])).to_dict('records')))\n"
    )
    env = {"MLFLOW_TRACKING_URI": trained.mlflow_uri, "PATH": str(Path(sys.executable).parent)}
    out = run([sys.executable, "-c", script, str(tmp_path / "rows.parquet")], env, timeout=120)
    predictions = json.loads(out.strip().splitlines()[-1])
    assert len(predictions) == 6
    assert {p["label"] for p in predictions} <= {"elliptical", "spiral"}
    assert all(0.0 <= p["p_elliptical"] <= 1.0 for p in predictions)
