"""Run it like production: a real `prefect server`, the work pool, `prefect deploy --all`, a worker.

Everything runs in child processes with their own PREFECT_HOME, on a free loopback port; the
server and the worker are always stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import raw_frame, write_snapshot

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop a child started in its own session, and everything it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server; yields the environment its clients use."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_", "GALAXY_"))
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        GALAXY_MLFLOW__ARTIFACT_ROOT=str(tmp_path / "mlartifacts"),
        GALAXY_TRAINING__N_JOBS="1",
        GALAXY_HOME=str(REPO),
    )
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prefect server did not answer /api/health in 120 s"
            time.sleep(1)
        yield env
    finally:
        stop(process)
        log.close()


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def flow_run_state(env: dict[str, str], flow_run_id: str) -> str:
    script = (
        "import sys\n"
        "from prefect import get_client\n"
        "with get_client(sync_client=True) as client:\n"
        "    print(client.read_flow_run(sys.argv[1]).state.type.value)\n"
    )
    return run([sys.executable, "-c", script, flow_run_id], env, timeout=60).strip().splitlines()[-1]


def test_deploy_all_then_a_worker_runs_the_training_deployment(
    server: dict[str, str], tmp_path: Path
) -> None:
    env = server
    snapshot = write_snapshot(raw_frame(120, 60, 20, seed=5), tmp_path / "gz1.csv")

    assert "created" in run([sys.executable, "deployments/create_work_pool.py"], env)
    assert "already present" in run([sys.executable, "deployments/create_work_pool.py"], env)
    run([PREFECT, "--no-prompt", "deploy", "--all"], env)
    listed = run([PREFECT, "deployment", "ls"], env)
    for name in ("galaxy-training", "galaxy-monitoring", "galaxy-classify", "galaxy-review"):
        assert name in listed
    assert "created" in run([sys.executable, "deployments/create_review_automation.py"], env)

    params = {"quick": True, "families": ["logistic"], "snapshot": str(snapshot)}
    started = run(
        [PREFECT, "deployment", "run", "galaxy-training/galaxy-training", "--params", json.dumps(params)], env
    )
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "galaxy-process", "--run-once"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        state = flow_run_state(env, flow_run_id)
        while state not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and time.monotonic() < deadline:
            time.sleep(3)
            state = flow_run_state(env, flow_run_id)
    finally:
        stop(worker)
        log.close()
    assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]
    assert (tmp_path / "mlflow.db").exists()
