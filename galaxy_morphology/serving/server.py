"""Start and stop the scoring server for a registered model.

The server is ``uvicorn`` running ``serving.app:create_app``: MLflow's own scoring app
(``/ping``, ``/health``, ``/version``, ``/invocations``) behind the request limits of
``serving.guard``, in this project's own environment. The model's files are downloaded once,
here, into a temporary folder and checked (``io.model_files``) before any worker loads them:
a folder edited in the artifact store is refused before anything in it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests
from mlflow.exceptions import MlflowException

from galaxy_morphology.core.settings import ServingSettings
from galaxy_morphology.io.model_files import ModelFolderError, check_model_folder, download_model
from galaxy_morphology.serving.app import CONFIG_ENV, app_config
from galaxy_morphology.serving.guard import Limits

BIN_DIR = Path(sys.executable).parent
READY_PATH = "/ping"
APP_FACTORY = "galaxy_morphology.serving.app:create_app"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder galaxy_morphology is imported from


class ServerError(RuntimeError):
    """The scoring server did not start (the message holds the end of its log)."""


def serve_command(host: str, port: int, workers: int = 1) -> list[str]:
    """The ``uvicorn`` command line of the scoring app (the model comes through ``CONFIG_ENV``).

    ``--app-dir`` is the folder this installed package is imported from: uvicorn would
    otherwise put its working directory first on ``sys.path``, and a ``galaxy_morphology``
    folder there (another checkout, an old copy) would be served instead.
    """
    return [
        str(BIN_DIR / "uvicorn"),
        "--app-dir",
        str(PACKAGE_ROOT),
        "--factory",
        APP_FACTORY,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def limits_of(serving: ServingSettings) -> Limits:
    """The request limits of the ``serving`` settings."""
    return Limits(serving.max_request_bytes, serving.max_records, serving.body_timeout_seconds)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def serve_env(tracking_uri: str, threads: int = 1, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: tracking and registry URI, this environment's ``bin`` first on
    PATH, and ``threads`` OpenMP/BLAS threads per worker (gradient boosting, KNN and BLAS
    would otherwise each start a thread per core in every worker, and spin on them)."""
    env = dict(os.environ if base is None else base)
    env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    path = env.get("PATH", "")
    env["PATH"] = os.pathsep.join([str(BIN_DIR), path]) if path else str(BIN_DIR)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["MLFLOW_REGISTRY_URI"] = tracking_uri  # the project keeps models in the tracking store
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the process that started it dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class ScoringServer:
    """A running scoring server (``uvicorn`` and its workers, in their own process group)."""

    process: subprocess.Popen[bytes]
    url: str
    model_uri: str
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    _model_folder: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the whole process group, SIGKILL it after ``timeout`` seconds."""
        if self.alive():
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout)
        # a worker may outlive the supervisor for an instant: make sure the group is gone
        _signal_group(self.process, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._model_folder is not None:
            self._model_folder.cleanup()
            self._model_folder = None
        return self.process.returncode

    def __enter__(self) -> ScoringServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def start_server(
    model_uri: str,
    tracking_uri: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    workers: int = 1,
    log_path: Path | None = None,
    wait: bool = True,
    timeout: float = 120.0,
    threads: int = 1,
    limits: Limits | None = None,
) -> ScoringServer:
    """Start the scoring server in the background; with ``wait``, return once /ping answers.

    The model is downloaded and checked first: an unknown or tampered model fails here, with
    ``ServerError``, before any process starts. ``limits`` default to the settings' defaults.
    """
    port = port or free_port(host)
    folder = tempfile.TemporaryDirectory(prefix="galaxy-serving-")
    try:
        model_folder = _checked_model(model_uri, tracking_uri, Path(folder.name))
        env = serve_env(tracking_uri, threads)
        env[CONFIG_ENV] = app_config(model_folder, limits or limits_of(ServingSettings()))
        log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 - closed by stop()
        process = subprocess.Popen(
            serve_command(host, port, workers),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,  # its own process group: stop() signals uvicorn and its workers
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    except BaseException:
        folder.cleanup()
        raise
    server = ScoringServer(process, f"http://{_url_host(host)}:{port}", model_uri, log_path, log, folder)
    if wait:
        try:
            wait_until_ready(server, timeout)
        except BaseException:
            server.stop()
            raise
    return server


def _checked_model(model_uri: str, tracking_uri: str, folder: Path) -> Path:
    try:
        local = download_model(model_uri, folder, tracking_uri)
        check_model_folder(local)
    except MlflowException as error:
        raise ServerError(f"cannot fetch model {model_uri} from {tracking_uri}: {error.message}") from None
    except ModelFolderError as error:
        raise ServerError(f"refused to serve model {model_uri}: {error}") from None
    return local


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def wait_until_ready(server: ScoringServer, timeout: float = 120.0) -> None:
    """Poll ``GET /ping`` until it answers 200; fail early when the server process exits."""
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while True:
            if not server.alive():
                raise ServerError(
                    f"the scoring server for {server.model_uri} exited with code "
                    f"{server.process.returncode} before answering {READY_PATH}"
                    + (f":\n{server.log_tail()}" if server.log_path else "")
                )
            try:
                if session.get(server.url + READY_PATH, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ServerError(
                    f"the scoring server for {server.model_uri} did not answer {READY_PATH} "
                    f"within {timeout:g} s" + (f":\n{server.log_tail()}" if server.log_path else "")
                )
            time.sleep(0.2)


def serve_foreground(model_uri: str, tracking_uri: str, serving: ServingSettings) -> int:
    """Run the server until it exits or this process gets SIGINT / SIGTERM; return its exit code."""
    server = start_server(
        model_uri,
        tracking_uri,
        serving.host,
        serving.port,
        serving.workers,
        wait=False,
        threads=serving.threads,
        limits=limits_of(serving),
    )
    stopped: list[int] = []

    def forward(signum: int, frame: object) -> None:
        # only signal here: waiting inside the handler would deadlock on Popen's wait lock
        stopped.append(signum)
        _signal_group(server.process, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = server.process.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopped else code
