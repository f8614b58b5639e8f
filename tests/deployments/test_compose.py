"""deployments/compose.yaml, checked without a Docker engine.

Debian's ``docker-compose`` (1.29) validates the files (``docker-compose config``: schema,
interpolation, references between services, build contexts) and prints the resolved
configuration, whose content is then checked here. The two Dockerfiles it builds are linted
by hadolint. scripts/provision.sh (run by ``make test`` and CI) installs docker-compose: when it
is missing the tests fail rather than skip, so the stack can never go unchecked.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dockerfiles import hadolint, instructions

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"
COMPOSE = DEPLOYMENTS / "compose.yaml"
DASK_OVERRIDE = DEPLOYMENTS / "compose.dask.yaml"
AUTH_OVERRIDE = DEPLOYMENTS / "compose.auth.yaml"
AUTH_INI = DEPLOYMENTS / "compose" / "mlflow-basic-auth.ini"
AUTH_SECRETS = {
    "PREFECT_AUTH_STRING": "galaxy:prefect-secret",
    "MLFLOW_ADMIN_PASSWORD": "mlflow-admin-secret",
    "MLFLOW_SECRET_KEY": "flask-secret",
}
COMPOSE_DIR = DEPLOYMENTS / "compose"
INIT_SQL = COMPOSE_DIR / "postgres-init.sql"
WORKER_DOCKERFILE = COMPOSE_DIR / "worker.Dockerfile"
MLFLOW_DOCKERFILE = COMPOSE_DIR / "mlflow.Dockerfile"

CORE = {"postgres", "prefect-server", "mlflow", "worker"}
PROFILES = {"serving": {"serving"}, "dask": {"dask-scheduler", "dask-worker"}}
ALL_SERVICES = CORE | set().union(*PROFILES.values())
SCHEDULER = "tcp://dask-scheduler:8786"
# what each healthcheck must probe
HEALTH_PROBES = {
    "postgres": "pg_isready",
    "prefect-server": "http://127.0.0.1:4200/api/health",
    "mlflow": "http://127.0.0.1:5000/health",
    "worker": "http://127.0.0.1:8080/health",
    "serving": "http://127.0.0.1:8080/ping",
    "dask-scheduler": "http://127.0.0.1:8787/health",
    "dask-worker": "http://127.0.0.1:8788/health",
}
# variables the compose files interpolate: the tests check the defaults, not the caller's values
INTERPOLATED_PREFIXES = ("POSTGRES_", "GALAXY_", "MLFLOW_", "PREFECT_", "COMPOSE_")

Config = dict[str, Any]


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(
            "docker-compose is not on PATH: run scripts/provision.sh (`make test` runs it) "
            "or install Debian's docker-compose package; these tests validate "
            "deployments/compose.yaml with it and must not be skipped",
            pytrace=False,
        )
    return path


class Compose:
    """``docker-compose -f FILE... --profile P... ARGS`` from the repository root, hermetically:
    no .env file, and none of the caller's variables that the compose files interpolate."""

    def __init__(self, empty_env_file: Path) -> None:
        self.executable = docker_compose()
        self.env_file = empty_env_file
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith(INTERPOLATED_PREFIXES)
        }

    def run(
        self,
        *files: Path,
        args: tuple[str, ...] = ("config",),
        project_directory: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        command = [self.executable, "--env-file", str(self.env_file)]
        if project_directory is not None:
            command += ["--project-directory", str(project_directory)]
        for file in files:
            command += ["-f", str(file)]
        for profile in sorted(PROFILES):
            command += ["--profile", profile]
        return subprocess.run(
            [*command, *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def resolved(self, *files: Path, extra_env: dict[str, str] | None = None) -> Config:
        result = self.run(*files, extra_env=extra_env)
        assert result.returncode == 0, result.stdout + result.stderr
        config = yaml.safe_load(result.stdout)
        assert isinstance(config, dict)
        return config


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    empty = tmp_path_factory.mktemp("compose") / "empty.env"
    empty.write_text("")
    return Compose(empty)


@pytest.fixture(scope="module")
def config(compose: Compose) -> Config:
    return compose.resolved(COMPOSE)


@pytest.fixture(scope="module")
def dask_config(compose: Compose) -> Config:
    return compose.resolved(COMPOSE, DASK_OVERRIDE)


@pytest.fixture(scope="module")
def auth_config(compose: Compose) -> Config:
    return compose.resolved(COMPOSE, AUTH_OVERRIDE, extra_env=AUTH_SECRETS)


def mounts(service: Config) -> dict[str, str]:
    """{container path: source} of a service's volumes (short or long syntax)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


def same_path(left: str | Path, right: str | Path) -> bool:
    return Path(left).resolve() == Path(right).resolve()


def command(service: Config) -> list[str]:
    value = service["command"]
    return value if isinstance(value, list) else value.split()


def option(arguments: list[str], name: str) -> str:
    return arguments[arguments.index(name) + 1]


def healthcheck_text(service: Config) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


# --- validation ----------------------------------------------------------------------------


def test_docker_compose_validates_every_service_of_every_profile(compose: Compose, config: Config) -> None:
    assert "version" not in yaml.safe_load(COMPOSE.read_text())  # Compose Specification
    assert set(config["services"]) == ALL_SERVICES
    for service in CORE:
        assert not config["services"][service].get("profiles"), service
    for profile, services in PROFILES.items():
        for service in services:
            assert config["services"][service]["profiles"] == [profile]
    listed = compose.run(COMPOSE, args=("config", "--profiles"))
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == set(PROFILES)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("unknown_key", "Unsupported config option for services.worker: 'restart_policy'"),
        ("missing_dependency", "depends on service 'no-such-service' which is undefined"),
        ("bad_condition", "service_happy"),
    ],
)
def test_a_broken_copy_is_refused(compose: Compose, tmp_path: Path, breakage: str, message: str) -> None:
    """The validation can fail: a copy that still passes, then the same copy broken once."""
    document = yaml.safe_load(COMPOSE.read_text())
    control = tmp_path / "control.yaml"
    control.write_text(yaml.safe_dump(document, sort_keys=False))
    # relative paths (build contexts, the init script) resolve against deployments/ as for the original
    passed = compose.run(control, args=("config", "-q"), project_directory=DEPLOYMENTS)
    assert passed.returncode == 0, passed.stdout + passed.stderr

    worker = document["services"]["worker"]
    if breakage == "unknown_key":
        worker["restart_policy"] = "always"
    elif breakage == "missing_dependency":
        worker["depends_on"]["no-such-service"] = {"condition": "service_healthy"}
    else:
        worker["depends_on"]["mlflow"]["condition"] = "service_happy"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    failed = compose.run(broken, args=("config", "-q"), project_directory=DEPLOYMENTS)
    assert failed.returncode != 0
    assert message in failed.stdout + failed.stderr


# --- the whole stack -----------------------------------------------------------------------


def test_every_service_restarts_and_reports_its_health(config: Config) -> None:
    for name, service in config["services"].items():
        assert service["restart"] == "unless-stopped", name
        assert HEALTH_PROBES[name] in healthcheck_text(service), name
        assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_dependencies_wait_for_health(config: Config, dask_config: Config) -> None:
    expected = {
        "prefect-server": {"postgres"},
        "mlflow": {"postgres"},
        "worker": {"prefect-server", "mlflow"},
        "dask-worker": {"dask-scheduler"},
    }
    for resolved_config, extra in ((config, set()), (dask_config, {"dask-scheduler"})):
        for name, service in resolved_config["services"].items():
            depends_on = service.get("depends_on", {})
            wanted = expected.get(name, set()) | (extra if name == "worker" else set())
            assert set(depends_on) == wanted, name
            for dependency, condition in depends_on.items():
                assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"


def test_persistent_state_lives_in_declared_named_volumes(config: Config) -> None:
    declared = set(config["volumes"])
    expected = {
        "postgres": {"/var/lib/postgresql/data": "postgres-data"},
        "mlflow": {"/mlartifacts": "mlflow-artifacts"},
        "worker": {
            "/app/data": "worker-data",
            "/app/outputs": "worker-outputs",
            "/app/reports": "worker-reports",
        },
    }
    for name, wanted in expected.items():
        found = mounts(config["services"][name])
        for target, volume in wanted.items():
            assert found.get(target) == volume, f"{name}:{target}"
    used = {
        source
        for service in config["services"].values()
        for source in mounts(service).values()
        if not source.startswith(("/", "."))
    }
    assert used == declared


def test_published_ports(config: Config) -> None:
    published = {
        name: {port.split(":")[-1].split("/")[0] for port in service.get("ports", [])}
        for name, service in config["services"].items()
    }
    assert published == {
        "postgres": set(),
        "prefect-server": {"4200"},
        "mlflow": {"5000"},
        "worker": set(),
        "serving": {"8080"},
        "dask-scheduler": {"8786", "8787"},
        "dask-worker": set(),
    }
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is published beyond this host by default"


# --- each service --------------------------------------------------------------------------


def test_postgres_is_pinned_and_creates_both_databases(config: Config) -> None:
    postgres = config["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    env = postgres["environment"]
    assert env["POSTGRES_USER"] == "galaxy" and env["POSTGRES_PASSWORD"] == "galaxy"  # development defaults
    init = {target: source for target, source in mounts(postgres).items() if "initdb.d" in target}
    assert len(init) == 1
    ((target, source),) = init.items()
    assert target.startswith("/docker-entrypoint-initdb.d/") and target.endswith(".sql")
    assert same_path(source, INIT_SQL) and INIT_SQL.is_file()
    statements = re.findall(r"^\s*CREATE DATABASE (\w+);", INIT_SQL.read_text(), flags=re.MULTILINE)
    assert sorted(statements) == ["mlflow", "prefect"]
    probe = postgres["healthcheck"]["test"]
    assert "pg_isready" in probe and option(probe, "-U") == env["POSTGRES_USER"]
    assert option(probe, "-h") == "127.0.0.1"  # TCP: the init phase's server listens on a socket only


def test_prefect_server_keeps_its_state_in_postgres(config: Config) -> None:
    server = config["services"]["prefect-server"]
    assert server["image"] == "prefecthq/prefect:3.9.1-python3.11"
    assert command(server) == ["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"]
    env = server["environment"]
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://galaxy:galaxy@postgres:5432/prefect"
    )
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_mlflow_uses_postgres_and_serves_the_artifacts(config: Config) -> None:
    mlflow = config["services"]["mlflow"]
    arguments = command(mlflow)
    assert arguments[:2] == ["mlflow", "server"]
    assert option(arguments, "--backend-store-uri") == "postgresql://galaxy:galaxy@postgres:5432/mlflow"
    assert "--serve-artifacts" in arguments
    assert option(arguments, "--artifacts-destination") == "/mlartifacts"
    assert (option(arguments, "--host"), option(arguments, "--port")) == ("0.0.0.0", "5000")
    # MLflow 3 answers 403 to Host headers it does not know: the worker calls it as mlflow:5000
    allowed = option(arguments, "--allowed-hosts").split(",")
    assert any(fnmatch.fnmatchcase("mlflow:5000", pattern) for pattern in allowed)
    assert any(fnmatch.fnmatchcase("127.0.0.1:5000", pattern) for pattern in allowed)
    assert "*" not in allowed


def test_worker_runs_the_flows_against_the_stack(config: Config) -> None:
    worker = config["services"]["worker"]
    env = worker["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["GALAXY_HOME"] == "/app"
    assert "GALAXY_TRAINING__DASK_ADDRESS" not in env  # no cluster unless the override says so
    snapshot = Path(env["GALAXY_DATA__SNAPSHOT_PATH"])
    assert same_path(mounts(worker)[str(snapshot.parent)], REPO.parent / "shared" / "data")
    assert any(volume.endswith(f"{snapshot.parent}:ro") for volume in worker["volumes"])
    script = command(worker)[-1]
    assert script.startswith("python deployments/create_work_pool.py && ")
    assert "prefect worker start --pool galaxy-process" in script and "--with-healthcheck" in script
    # the pool and the working directory the deployments expect
    prefect_yaml = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert prefect_yaml["definitions"]["work_pool"]["name"] == "galaxy-process"
    assert "$GALAXY_HOME" in str(prefect_yaml["pull"])
    assert (REPO / "deployments" / "create_work_pool.py").is_file()


def test_serving_needs_its_profile(config: Config) -> None:
    serving = config["services"]["serving"]
    assert same_path(serving["build"]["context"], REPO) and serving["build"]["dockerfile"] == "Dockerfile"
    assert "depends_on" not in serving  # the model is baked into the image


def test_dask_cluster_runs_on_the_worker_image(config: Config, dask_config: Config) -> None:
    services = config["services"]
    worker_image = (services["worker"]["image"], services["worker"]["build"])
    for name in ("dask-scheduler", "dask-worker"):
        assert (services[name]["image"], services[name]["build"]) == worker_image, name
    scheduler = command(services["dask-scheduler"])
    assert scheduler[:2] == ["dask", "scheduler"] and option(scheduler, "--port") == "8786"
    assert option(scheduler, "--dashboard-address") == ":8787"
    dask_worker = services["dask-worker"]
    arguments = command(dask_worker)
    assert arguments[:3] == ["dask", "worker", SCHEDULER] and option(arguments, "--nthreads") == "1"
    assert option(arguments, "--dashboard-address") == ":8788"
    assert dask_worker["deploy"]["replicas"] == 2
    assert "container_name" not in dask_worker and not dask_worker.get("ports")
    # the override points the flows at the cluster and changes nothing else
    assert dask_config["services"]["worker"]["environment"] == {
        **services["worker"]["environment"],
        "GALAXY_TRAINING__DASK_ADDRESS": SCHEDULER,
    }
    for name in ALL_SERVICES:
        assert unordered(dask_config["services"][name], "environment", "depends_on") == unordered(
            services[name], "environment", "depends_on"
        ), name


def unordered(service: Config, *leave_out: str) -> Config:
    """The service without ``leave_out``, its volumes sorted (merging files reorders them)."""
    kept = {key: value for key, value in service.items() if key not in leave_out}
    if "volumes" in kept:
        kept["volumes"] = sorted(map(str, kept["volumes"]))
    return kept


# --- images --------------------------------------------------------------------------------


def test_build_contexts_and_dockerfiles_exist(config: Config) -> None:
    builds = {name: service["build"] for name, service in config["services"].items() if "build" in service}
    assert set(builds) == ALL_SERVICES - {"postgres", "prefect-server"}
    for name, build in builds.items():
        context = Path(build["context"])
        assert context.is_dir(), name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
    assert same_path(builds["worker"]["context"], REPO)
    assert same_path(Path(builds["worker"]["context"], builds["worker"]["dockerfile"]), WORKER_DOCKERFILE)
    assert same_path(Path(builds["mlflow"]["context"], builds["mlflow"]["dockerfile"]), MLFLOW_DOCKERFILE)


def test_worker_image_installs_the_locked_environment() -> None:
    parsed = instructions(WORKER_DOCKERFILE)
    assert parsed[0] == ("FROM", "python:3.11-slim")
    assert ("WORKDIR", "/app") in parsed
    assert any(word == "ENV" and "GALAXY_HOME=/app" in rest for word, rest in parsed)
    runs = [rest for word, rest in parsed if word == "RUN"]
    assert any("pip install -r requirements.lock" in run for run in runs)
    assert any("pip install --no-deps" in run for run in runs)
    users = [rest for word, rest in parsed if word == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"


def test_mlflow_image_pins_the_project_versions() -> None:
    """The server image runs the mlflow, SQLAlchemy and psycopg the PostgreSQL tests ran."""
    parsed = instructions(MLFLOW_DOCKERFILE)
    assert parsed[0] == ("FROM", "python:3.11-slim")
    install = next(rest for word, rest in parsed if word == "RUN" and "pip install" in rest)
    pinned = {word.strip('"') for word in install.split()}
    lock = (REPO / "requirements.lock").read_text()
    for package, spelled in (
        ("mlflow", "mlflow"),
        ("SQLAlchemy", "SQLAlchemy"),
        ("psycopg", "psycopg[binary]"),
    ):
        locked = re.search(rf"^{package}==(\S+)$", lock, flags=re.MULTILINE)
        assert locked is not None, package
        assert f"{spelled}=={locked.group(1)}" in pinned, package
    users = [rest for word, rest in parsed if word == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"


def in_context(path: str, patterns: list[str]) -> bool:
    """Whether the build context keeps ``path`` under a .dockerignore's ``patterns``: the last
    pattern matching the path or one of its parent folders decides, ``!`` admits."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    kept = True
    for pattern in patterns:
        admits = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        if glob.startswith("**/"):
            matched = any(fnmatch.fnmatchcase(part, glob[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes)
        if matched:
            kept = admits
    return kept


def test_root_ignore_file_admits_what_the_images_copy_and_no_local_state() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for local_state in (
        ".venv/bin/python",
        ".venv-ci",
        ".git/HEAD",
        "mlflow.db",
        "mlartifacts/1",
        "data/x.csv",
        "outputs/p.parquet",
        "reports/r.html",
        "tests/conftest.py",
        "bench/bench_dask.py",
    ):
        assert not in_context(local_state, patterns), local_state
    assert not in_context("galaxy_morphology/__pycache__/cli.cpython-311.pyc", patterns)
    copied = [
        source.replace("${MODEL_DIR}", "build/model").rstrip("/")
        for dockerfile in (REPO / "Dockerfile", WORKER_DOCKERFILE)
        for word, rest in instructions(dockerfile)
        if word == "COPY"
        for source in rest.split()[:-1]
        if not source.startswith("--")
    ]
    assert "requirements.lock" in copied and "build/model" in copied
    for source in copied:
        assert in_context(source, patterns), source


@pytest.mark.parametrize("dockerfile", [WORKER_DOCKERFILE, MLFLOW_DOCKERFILE], ids=lambda path: path.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


# --- authentication (compose.auth.yaml) -------------------------------------------------------


def test_without_the_auth_file_the_servers_have_no_authentication(config: Config) -> None:
    """The plain stack is for one host: every port on 127.0.0.1, no credentials configured."""
    services = config["services"]
    assert "PREFECT_SERVER_API_AUTH_STRING" not in services["prefect-server"]["environment"]
    assert "--app-name" not in command(services["mlflow"])
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), name


def test_the_auth_file_turns_on_prefect_and_mlflow_authentication(auth_config: Config) -> None:
    services = auth_config["services"]
    prefect_server = services["prefect-server"]["environment"]
    assert prefect_server["PREFECT_SERVER_API_AUTH_STRING"] == AUTH_SECRETS["PREFECT_AUTH_STRING"]
    worker = services["worker"]["environment"]
    assert worker["PREFECT_API_AUTH_STRING"] == AUTH_SECRETS["PREFECT_AUTH_STRING"]
    assert (worker["MLFLOW_TRACKING_USERNAME"], worker["MLFLOW_TRACKING_PASSWORD"]) == (
        "admin",
        AUTH_SECRETS["MLFLOW_ADMIN_PASSWORD"],
    )
    mlflow = services["mlflow"]
    arguments = command(mlflow)
    assert option(arguments, "--app-name") == "basic-auth"
    assert option(arguments, "--backend-store-uri") == "postgresql://galaxy:galaxy@postgres:5432/mlflow"
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == AUTH_SECRETS["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == AUTH_SECRETS["MLFLOW_SECRET_KEY"]
    config_path = env["MLFLOW_AUTH_CONFIG_PATH"]
    assert same_path(mounts(mlflow)[config_path], AUTH_INI)
    ini = AUTH_INI.read_text()
    assert "admin_password" not in ini  # the password comes from the environment only
    database = re.search(r"^database_uri = sqlite:///(/\S+)/basic_auth.db$", ini, flags=re.MULTILINE)
    assert database is not None and mounts(mlflow)[database.group(1)] == "mlflow-auth"
    # the image has what basic-auth imports, and a folder the server user owns for its users
    dockerfile = MLFLOW_DOCKERFILE.read_text()
    assert "Flask-WTF==" in dockerfile and "chown mlflow:mlflow /mlartifacts /mlflow-auth" in dockerfile
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), name


@pytest.mark.parametrize("missing", sorted(AUTH_SECRETS))
def test_the_auth_file_refuses_to_start_without_a_secret(compose: Compose, missing: str) -> None:
    secrets = {name: value for name, value in AUTH_SECRETS.items() if name != missing}
    result = compose.run(COMPOSE, AUTH_OVERRIDE, args=("config", "-q"), extra_env=secrets)
    assert result.returncode != 0
    assert missing in result.stdout + result.stderr
