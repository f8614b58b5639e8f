"""Real servers for integration tests: free ports, process groups, PostgreSQL, MLflow, Prefect.

Every server runs as a child process in its own session on a loopback port, and is always
stopped (with everything it started) when its context ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen, sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop a child started in its own session, and everything it started."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} not ready in {timeout:.0f} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect, MLflow or galaxy settings, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_", "GALAXY_"))
    }
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.update(extra)
    return env


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], log: Path, health_url: str, what: str) -> Iterator[None]:
    """Run ``args`` until the context ends; ready when ``health_url`` answers 200."""
    with log.open("w") as sink:
        process = subprocess.Popen(
            args, env=env, cwd=log.parent, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(lambda: answers(health_url), process, log, what, timeout=180)
            yield
        finally:
            stop(process)


# --- PostgreSQL -------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str = "galaxy"
    host: str = "127.0.0.1"

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []


INITDB = ("-E", "UTF8", "--no-sync", "--locale=C")


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server programs (newest version), or those on PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if debian:
        return debian[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    pytest.fail("PostgreSQL is not installed: run scripts/provision.sh (`make test` runs it)")


@contextlib.contextmanager
def postgres_server(databases: tuple[str, ...]) -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster on a free loopback port, with ``databases`` created.

    PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
    system user (Debian's package creates it) and its programs run through ``runuser``.
    """
    bindir = postgres_bindir()
    base = Path(tempfile.mkdtemp(prefix="galaxy-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    server = Postgres(port=free_port())
    data = base / "data"
    log = Path(tempfile.mkdtemp(prefix="galaxy-pg-log-")) / "postgres.log"
    try:
        subprocess.run(
            [*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", server.user, "--auth=trust", *INITDB],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with log.open("w") as sink:
            settings = ["-h", server.host, "-k", str(base), "-c", "fsync=off", "-c", "max_connections=200"]
            process = subprocess.Popen(
                [*as_owner, str(bindir / "postgres"), "-D", str(data), "-p", str(server.port), *settings],
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_until(lambda: _accepts(server), process, log, "postgres", timeout=60)
                for database in databases:
                    server.query("postgres", f'CREATE DATABASE "{database}"')
                yield server
            finally:
                stop(process, signal.SIGINT)  # SIGINT is PostgreSQL's fast shutdown
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(log.parent, ignore_errors=True)


def _accepts(server: Postgres) -> bool:
    try:
        server.query("postgres", "SELECT 1")
    except Exception:
        return False
    return True


# --- MLflow and Prefect servers -------------------------------------------------------------


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifacts: Path,
    workdir: Path,
    app_name: str | None = None,
    server_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """``mlflow server`` on ``backend_store_uri``, serving artifacts from ``artifacts``; yields its URI.

    ``app_name`` is passed as ``--app-name`` (``basic-auth``), ``server_env`` adds to its environment.
    """
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    args = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_store_uri]
    args += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    args += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if app_name:
        args += ["--app-name", app_name]
    # no job runner (seven worker processes for GenAI features), as in deployments/compose.yaml
    env = clean_env(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"
    )
    env.update(server_env or {})
    with serving(args, env, workdir / "mlflow-server.log", f"{uri}/health", "mlflow server"):
        yield uri


@contextlib.contextmanager
def prefect_server(
    workdir: Path, database_url: str | None = None, ui: bool = False, server_env: dict[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """``prefect server start`` (on ``database_url`` when given, serving its UI when ``ui``, with
    ``server_env`` added to the server's environment only); yields its clients' environment."""
    port = free_port()
    env = clean_env(
        PREFECT_HOME=str(workdir / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_UI_ENABLED=str(ui).lower(),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
    )
    server = {**env, **(server_env or {})}
    if database_url:
        server["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with serving(args, server, workdir / "prefect-server.log", f"{env['PREFECT_API_URL']}/health", "prefect"):
        yield env


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


def deploy_and_run_training(env: dict[str, str], params: dict[str, object], workdir: Path) -> str:
    """Create the work pool, ``prefect deploy --all``, run the training deployment on a worker.

    Returns the flow run's final state type; the worker runs once and is always stopped.
    """
    prefect = str(BIN / "prefect")
    assert "created" in run([sys.executable, "deployments/create_work_pool.py"], env)
    run([prefect, "--no-prompt", "deploy", "--all"], env)
    started = run(
        [prefect, "deployment", "run", "galaxy-training/galaxy-training", "--params", json.dumps(params)], env
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", started)
    assert match, started
    log = workdir / "worker.log"
    with log.open("w") as sink:
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "galaxy-process", "--run-once"],
            env=env,
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            state = flow_run_state(env, match.group(1))
            while (
                state not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and time.monotonic() < deadline
            ):
                time.sleep(3)
                state = flow_run_state(env, match.group(1))
        finally:
            stop(worker)
    assert state == "COMPLETED", log.read_text()[-4000:]
    return state
