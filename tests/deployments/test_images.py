"""Every image built and run on the machine's Docker engine, and the compose stack run with every
profile: what test_compose.py and tests/serving/test_dockerfile.py check on paper, for real.

The engine is the machine's own, or the one scripts/provision.sh starts (``make test`` runs it).
Where no registry is reachable the Dockerfiles' bases are stand-ins built from Debian packages
(tests/containers/standin_bases.sh, cached between runs). Images are tagged ``:ci`` so a user's
``:latest`` images are never replaced; each compose project has its own name, networks and
volumes, and is removed with ``down -v`` whatever happens.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from galaxy_morphology.serving.guard import Limits
from galaxy_morphology.serving.server import ScoringServer, start_server
from tests.containers.engine import (
    REPO,
    Compose,
    build,
    docker,
    ensure_base_images,
    get,
    prune_replaced_builds,
    require_engine,
    wait_for,
)
from tests.factories import raw_frame, write_snapshot
from tests.servers import BIN, clean_env, free_port, run
from tests.serving.adversarial import cases, problems, still_scores
from tests.serving.champion import CHAMPION_URI, TrainedStore, train_champion
from tests.serving.test_server import BAD_REQUESTS, records

pytestmark = pytest.mark.integration

COMPOSE = REPO / "deployments/compose.yaml"
DASK_OVERRIDE = REPO / "deployments/compose.dask.yaml"
TAG = "ci"
SERVING_IMAGE = f"galaxy-morphology-serving:{TAG}"
CORE = {"postgres", "prefect-server", "mlflow", "worker"}
DASK = {"dask-scheduler", "dask-worker"}
NON_ROOT = "10001"
JSON_TYPE = "application/json"


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    require_engine()
    ensure_base_images()
    yield
    prune_replaced_builds()


@pytest.fixture(scope="module")
def network(engine: None) -> Iterator[str]:
    """A bridge network of the tests' own: engines started with --bridge=none have no default one."""
    name = f"galaxy-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


def model_context(folder: Path, model_uri: str, tracking_uri: str) -> Path:
    """A build context for the root Dockerfile: the repository's files it copies (as its
    .dockerignore admits them) and the model downloaded into build/model."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, folder / name)
    shutil.copytree(
        REPO / "galaxy_morphology", folder / "galaxy_morphology", ignore=shutil.ignore_patterns("__pycache__")
    )
    # as the Dockerfile's header tells a user to
    download = [
        str(BIN / "mlflow"),
        "artifacts",
        "download",
        "-u",
        model_uri,
        "-d",
        str(folder / "build/model"),
    ]
    run(download, clean_env(MLFLOW_TRACKING_URI=tracking_uri))
    return folder


def invoke(url: str, body: str | bytes, content_type: str = JSON_TYPE) -> requests.Response:
    return requests.post(f"{url}/invocations", data=body, headers={"Content-Type": content_type}, timeout=30)


def health(container: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()


# --- the serving image, with a freshly trained champion baked in ---------------------------------


@pytest.fixture(scope="module")
def champion(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return train_champion(tmp_path_factory.mktemp("champion"))


@pytest.fixture(scope="module")
def serving_image(engine: None, champion: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = model_context(tmp_path_factory.mktemp("serving-context"), CHAMPION_URI, champion.tracking_uri)
    build(SERVING_IMAGE, REPO / "Dockerfile", context)
    return SERVING_IMAGE


@pytest.fixture(scope="module")
def serving_container(serving_image: str, network: str) -> Iterator[tuple[str, str]]:
    """(container id, base URL) of the serving image on a free loopback port."""
    container = docker(
        "run", "-d", "--network", network, "-p", "127.0.0.1::8080", serving_image
    ).stdout.strip()
    try:
        port = docker("port", container, "8080/tcp").stdout.split()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: get(f"{url}/ping") == 200,
            "serving container",
            timeout=180,
            diagnose=lambda: docker("logs", "--tail", "40", container, check=False).stderr,
        )
        yield container, url
    finally:
        docker("rm", "-f", "-v", container, check=False)


@pytest.fixture(scope="module")
def local_server(champion: TrainedStore) -> Iterator[ScoringServer]:
    """``galaxy serve``'s server for the same champion, on the host."""
    server = start_server(
        CHAMPION_URI, champion.tracking_uri, log_path=champion.folder / "local-server.log", timeout=120
    )
    try:
        yield server
    finally:
        server.stop()


def test_serving_image_predicts_like_galaxy_serve(
    serving_container: tuple[str, str], local_server: ScoringServer
) -> None:
    _, url = serving_container
    assert get(f"{url}/ping") == 200
    bodies = [
        json.dumps({"dataframe_records": records(4)}),
        json.dumps({"dataframe_split": json.loads(raw_frame(3, 3, 0).to_json(orient="split", index=False))}),
    ]
    for body in bodies:
        in_container = invoke(url, body)
        on_host = invoke(local_server.url, body)
        assert in_container.status_code == on_host.status_code == 200, in_container.text
        assert in_container.json() == on_host.json()


def test_serving_image_runs_as_a_non_root_user(serving_container: tuple[str, str]) -> None:
    container, _ = serving_container
    assert docker("inspect", "--format", "{{.Config.User}}", container).stdout.strip() == NON_ROOT
    assert docker("exec", container, "id", "-u").stdout.strip() == NON_ROOT


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_serving_image_refuses_bad_input_like_galaxy_serve(
    serving_container: tuple[str, str], local_server: ScoringServer, case: str
) -> None:
    container, url = serving_container
    body, content_type, words = BAD_REQUESTS[case]
    in_container = invoke(url, body, content_type)
    on_host = invoke(local_server.url, body, content_type)
    assert 400 <= in_container.status_code < 500, (in_container.status_code, in_container.text[:2000])
    assert in_container.status_code == on_host.status_code
    for word in words:
        assert word in in_container.text, (word, in_container.text[:2000])
    assert docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip() == "true"


# the image runs with the guard's default limits (no settings file in it)
IMAGE_CASES = cases(Limits().max_request_bytes, Limits().body_timeout_seconds)


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_serving_image_refuses_hostile_requests_like_galaxy_serve(
    serving_container: tuple[str, str], case: str
) -> None:
    container, url = serving_container
    send, expected = IMAGE_CASES[case]
    answer = send(url)
    assert problems(answer, expected) == [], answer.body[:2000]
    assert still_scores(url)
    assert docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip() == "true"


def test_serving_image_healthcheck_turns_healthy(serving_container: tuple[str, str]) -> None:
    container, _ = serving_container
    # the Dockerfile's HEALTHCHECK probes every 30 s: the first verdict comes after one interval
    wait_for(lambda: health(container) == "healthy", "serving healthcheck", timeout=120)


# --- the compose stack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    """The core services and the Dask profile, built from the compose file's own build sections
    and started with ``up``; ``down -v`` at the end, whatever happened."""
    data = tmp_path_factory.mktemp("stack-data")
    data.chmod(0o755)  # mounted read-only for the worker's non-root user
    write_snapshot(raw_frame(120, 60, 20, seed=5), data / "gz1.csv").chmod(0o644)
    variables = {
        "GALAXY_IMAGE_TAG": TAG,
        "GALAXY_DATA_DIR": str(data),
        **{
            f"GALAXY_{name}_HOST_PORT": str(free_port())
            for name in ("PREFECT", "MLFLOW", "SERVING", "DASK", "DASK_DASHBOARD")
        },
    }
    compose = Compose(f"galaxy-test-{uuid.uuid4().hex[:8]}", [COMPOSE, DASK_OVERRIDE], variables, ["dask"])
    built: set[str] = set()
    for service in compose.services().values():
        if "build" in service and service["image"] not in built:
            context = Path(service["build"]["context"])
            build(service["image"], context / service["build"].get("dockerfile", "Dockerfile"), context)
            built.add(service["image"])
    try:
        compose.run("up", "-d", "--no-build", timeout=600)
        yield compose
    finally:
        compose.profiles = ["dask", "serving"]
        compose.down()


def test_stack_comes_up_with_every_healthcheck_healthy(stack: Compose) -> None:
    wait_for(
        lambda: stack.all_healthy(CORE | DASK),
        "compose stack",
        timeout=300,
        diagnose=lambda: json.dumps(stack.containers(), indent=1),
    )
    assert {container["service"] for container in stack.containers()} == CORE | DASK


@pytest.fixture(scope="module")
def stack_champion(stack: Compose) -> str:
    """The training deployment run on the stack's worker (tuning on its Dask cluster); its output."""
    wait_for(lambda: stack.all_healthy(CORE | DASK), "compose stack", timeout=300)
    stack.exec("worker", "prefect", "--no-prompt", "deploy", "--all")
    params = {"quick": True, "families": ["logistic"], "snapshot": "/shared/data/gz1.csv"}
    ran = stack.exec(
        "worker",
        *("prefect", "deployment", "run", "galaxy-training/galaxy-training"),
        *("--params", json.dumps(params), "--watch"),
        timeout=900,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return ran.stdout


def psql(stack: Compose, database: str, sql: str) -> list[str]:
    return stack.exec("postgres", "psql", "-U", "galaxy", "-d", database, "-Atc", sql).stdout.split()


def test_training_deployment_on_the_worker_registers_a_champion(stack: Compose, stack_champion: str) -> None:
    assert "Completed" in stack_champion
    aliases = psql(stack, "mlflow", "SELECT alias || '=' || version FROM registered_model_aliases")
    assert aliases == ["champion=1"]
    assert psql(stack, "mlflow", "SELECT status FROM model_versions") == ["READY"]
    assert "COMPLETED" in psql(stack, "prefect", "SELECT state_type FROM flow_run")
    scheduler = stack.run("logs", "dask-scheduler").stdout
    assert "Receive client connection" in scheduler  # the searches ran on the cluster


def test_serving_profile_serves_the_stacks_champion(
    stack: Compose, stack_champion: str, tmp_path: Path
) -> None:
    tracking_uri = f"http://127.0.0.1:{stack.variables['GALAXY_MLFLOW_HOST_PORT']}"
    context = model_context(tmp_path / "context", CHAMPION_URI, tracking_uri)
    build(SERVING_IMAGE, REPO / "Dockerfile", context)
    stack.profiles = ["dask", "serving"]
    stack.run("up", "-d", "--no-build", "serving")
    url = f"http://127.0.0.1:{stack.variables['GALAXY_SERVING_HOST_PORT']}"
    wait_for(lambda: get(f"{url}/ping") == 200, "serving profile", timeout=180)
    body = json.dumps({"dataframe_records": records(4)})
    local = start_server(str(context / "build/model"), tracking_uri, log_path=tmp_path / "local.log")
    try:
        assert invoke(url, body).json() == invoke(local.url, body).json()
    finally:
        local.stop()
    (serving,) = [c for c in stack.containers() if c["service"] == "serving"]
    wait_for(lambda: health(serving["name"]) == "healthy", "serving healthcheck", timeout=120)


def test_down_leaves_nothing_behind(stack: Compose) -> None:
    stack.profiles = ["dask", "serving"]
    stack.run("down", "-v", "--timeout", "20", timeout=180)
    assert stack.leftovers() == {"container": [], "volume": [], "network": []}
