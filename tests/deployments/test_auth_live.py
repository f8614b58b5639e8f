"""The authentication of deployments/compose.auth.yaml and the README's "Scaling out" really works.

Real servers on free loopback ports, configured by the same environment variables and files:

- ``prefect server start`` with ``PREFECT_SERVER_API_AUTH_STRING`` refuses API requests without
  the right ``Authorization: Basic`` header (its health probe stays open), and a flow run by a
  client with ``PREFECT_API_AUTH_STRING`` completes, while the same client without it fails.
- ``mlflow server --app-name basic-auth`` with deployments/compose/mlflow-basic-auth.ini (its
  users database moved into a temporary folder) and the admin user from the environment refuses
  anonymous and wrong-password requests (``/health`` stays open), and a client with
  ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` logs a run, metric and artifact.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import REPO, clean_env, mlflow_server, prefect_server

pytestmark = pytest.mark.integration

PREFECT_USER, PREFECT_PASSWORD = "user", "secret"
MLFLOW_ADMIN, MLFLOW_PASSWORD = "admin", "correct-horse-battery-staple"
AUTH_INI = REPO / "deployments" / "compose" / "mlflow-basic-auth.ini"

FLOW = """
from prefect import flow
from prefect.runtime import flow_run

@flow(name="auth-probe")
def probe() -> str:
    return flow_run.id

print(probe())
"""

MLFLOW_RUN = """
import sys
import mlflow

mlflow.set_experiment(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.log_metric("accuracy", 0.875)
    mlflow.log_text("authenticated", "note.txt")
print(run.info.run_id)
"""


def http() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=60)


def client(script: str, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter as a client with ``env`` (no files outside ``cwd``)."""
    return subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


# --- Prefect ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Clients' environment (without the auth string) of a Prefect server that requires it."""
    workdir = tmp_path_factory.mktemp("prefect-auth")
    auth = {"PREFECT_SERVER_API_AUTH_STRING": f"{PREFECT_USER}:{PREFECT_PASSWORD}"}
    with prefect_server(workdir, server_env=auth) as env:
        yield env


def test_prefect_api_needs_the_auth_string(prefect: dict[str, str]) -> None:
    api = prefect["PREFECT_API_URL"]
    with http() as session:
        assert session.get(f"{api}/health").status_code == 200  # the compose healthcheck's probe
        assert session.post(f"{api}/flows/filter", json={}).status_code == 401
        wrong = session.post(f"{api}/flows/filter", json={}, auth=(PREFECT_USER, "wrong"))
        assert wrong.status_code == 401
        right = session.post(f"{api}/flows/filter", json={}, auth=(PREFECT_USER, PREFECT_PASSWORD))
        assert right.status_code == 200, right.text


def test_prefect_flow_runs_only_with_the_auth_string(prefect: dict[str, str], tmp_path: Path) -> None:
    refused = client(FLOW, prefect, tmp_path)
    assert refused.returncode != 0
    assert "'401 Unauthorized'" in refused.stderr, refused.stderr[-3000:]

    authenticated = {**prefect, "PREFECT_API_AUTH_STRING": f"{PREFECT_USER}:{PREFECT_PASSWORD}"}
    done = client(FLOW, authenticated, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    flow_run_id = done.stdout.strip().splitlines()[-1]
    with http() as session:
        answer = session.get(
            f"{prefect['PREFECT_API_URL']}/flow_runs/{flow_run_id}", auth=(PREFECT_USER, PREFECT_PASSWORD)
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"]["type"] == "COMPLETED"


# --- MLflow -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of an ``mlflow server --app-name basic-auth`` configured as compose.auth.yaml does."""
    workdir = tmp_path_factory.mktemp("mlflow-auth")
    ini, moved = re.subn(
        r"^database_uri = .*$",
        f"database_uri = sqlite:///{workdir / 'basic_auth.db'}",
        AUTH_INI.read_text(),
        flags=re.MULTILINE,
    )
    assert moved == 1, AUTH_INI
    (workdir / "basic_auth.ini").write_text(ini)
    server_env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(workdir / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_ADMIN,
        "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
    }
    backend = f"sqlite:///{workdir / 'mlflow.db'}"
    with mlflow_server(
        backend, workdir / "art", workdir, app_name="basic-auth", server_env=server_env
    ) as uri:
        assert (workdir / "basic_auth.db").is_file()  # the users live where the ini says
        yield uri


def test_mlflow_api_needs_a_user_and_health_stays_open(mlflow_uri: str) -> None:
    search = f"{mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    with http() as session:
        assert session.get(f"{mlflow_uri}/health").status_code == 200
        assert session.get(search).status_code == 401
        assert session.get(search, auth=(MLFLOW_ADMIN, "wrong-password-123")).status_code == 401
        right = session.get(search, auth=(MLFLOW_ADMIN, MLFLOW_PASSWORD))
        assert right.status_code == 200, right.text


def test_mlflow_client_logs_a_run_only_with_the_right_password(mlflow_uri: str, tmp_path: Path) -> None:
    env = clean_env(MLFLOW_TRACKING_URI=mlflow_uri, MLFLOW_TRACKING_USERNAME=MLFLOW_ADMIN)
    refused = client(
        MLFLOW_RUN, {**env, "MLFLOW_TRACKING_PASSWORD": "wrong-password-123"}, tmp_path, "denied"
    )
    assert refused.returncode != 0
    assert "failed with error code 401" in refused.stderr, refused.stderr[-3000:]

    done = client(MLFLOW_RUN, {**env, "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD}, tmp_path, "granted")
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.strip().splitlines()[-1]
    api = f"{mlflow_uri}/api/2.0/mlflow"
    admin = (MLFLOW_ADMIN, MLFLOW_PASSWORD)
    with http() as session:
        run = session.get(f"{api}/runs/get", params={"run_id": run_id}, auth=admin).json()["run"]
        artifacts = session.get(f"{api}/artifacts/list", params={"run_id": run_id}, auth=admin).json()
        granted = session.get(
            f"{api}/experiments/get-by-name", params={"experiment_name": "granted"}, auth=admin
        )
        denied = session.get(
            f"{api}/experiments/get-by-name", params={"experiment_name": "denied"}, auth=admin
        )
    assert run["info"]["status"] == "FINISHED"
    assert {"key": "accuracy", "value": 0.875} in [
        {"key": metric["key"], "value": metric["value"]} for metric in run["data"]["metrics"]
    ]
    assert [entry["path"] for entry in artifacts["files"]] == ["note.txt"]
    assert run["info"]["experiment_id"] == granted.json()["experiment"]["experiment_id"]
    assert denied.status_code == 404  # the refused client created nothing
