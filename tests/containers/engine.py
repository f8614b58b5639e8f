"""The machine's Docker engine for the image and compose-stack tests: builds, containers, a compose
project, each always cleaned up by the fixture that made it.

Builds use the legacy builder (``DOCKER_BUILDKIT=0``) on the host's network: the project's
Dockerfiles need nothing from BuildKit, BuildKit would fetch its frontend from a registry, and an
engine started with ``--bridge=none`` (scripts/provision.sh) has no default network for a build
step to reach the package index through. Containers run on networks the tests create, which work
on every engine.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STANDIN_BASES = REPO / "tests/containers/standin_bases.sh"
PROJECT_LABEL = "com.docker.compose.project"
TEST_BUILD_LABEL = "org.galaxy-morphology.test-build"
# the compose files' variables: a test sets its own, never the caller's
INTERPOLATED_PREFIXES = ("POSTGRES_", "GALAXY_", "MLFLOW_", "PREFECT_", "COMPOSE_")


def docker_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["docker", *args], env=docker_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def require_engine() -> None:
    """Fail (never skip) when no Docker engine answers, saying how to get one."""
    try:
        answered = docker("version", "--format", "{{.Server.Version}}", timeout=20, check=False)
    except FileNotFoundError:
        pytest.fail("docker is not installed: run scripts/provision.sh (`make test` runs it)", pytrace=False)
    if answered.returncode != 0:
        pytest.fail(
            f"no Docker engine answers ({answered.stderr.strip()[:300]}): run scripts/provision.sh "
            "(`make test` runs it) as root",
            pytrace=False,
        )


def ensure_base_images() -> None:
    """The base images every Dockerfile starts from: real ones when present or pullable,
    otherwise the stand-ins (built once per machine, then cached)."""
    done = subprocess.run(
        [str(STANDIN_BASES)], env=docker_env(), capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        pytest.fail(f"{STANDIN_BASES.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def build(tag: str, dockerfile: Path, context: Path, timeout: float = 1800) -> None:
    """``docker build`` (legacy builder, host network), labelled as a test build."""
    args = ["build", "--force-rm", "--network", "host", "--label", TEST_BUILD_LABEL]
    done = docker(*args, "-f", str(dockerfile), "-t", tag, str(context), timeout=timeout, check=False)
    if done.returncode != 0:
        pytest.fail(f"building {tag} from {dockerfile} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")


def prune_replaced_builds() -> None:
    """Remove the test builds a rebuild left without a tag. Deleting a large image can take
    minutes on a loaded machine: the engine finishes it even when this stops waiting."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        docker("image", "prune", "--force", "--filter", f"label={TEST_BUILD_LABEL}", timeout=300, check=False)


def get(url: str, timeout: float = 3) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status
    except OSError:
        return None


def wait_for(
    ready: Callable[[], bool], what: str, timeout: float, diagnose: Callable[[], str] | None = None
) -> None:
    """Poll ``ready()`` every second until true; fail after ``timeout`` seconds with ``diagnose()``."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready in {timeout:.0f} s\n{diagnose() if diagnose else ''}")
        time.sleep(1)


@functools.cache
def compose_executable() -> tuple[str, ...]:
    """Compose v2 (``docker compose``) when the engine's client has it, else Debian's 1.29."""
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    if v2.returncode == 0:
        return ("docker", "compose")
    if shutil.which("docker-compose") is None:
        pytest.fail("neither `docker compose` nor docker-compose: run scripts/provision.sh", pytrace=False)
    return ("docker-compose",)


@dataclass
class Compose:
    """One compose project (``docker-compose -p NAME -f FILE...``) from the repository root, with
    only the variables given here interpolated."""

    name: str
    files: list[Path]
    variables: dict[str, str]
    profiles: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(INTERPOLATED_PREFIXES)}
        return {**inherited, **self.variables, "DOCKER_BUILDKIT": "0"}

    def command(self, *args: str) -> list[str]:
        files = [word for path in self.files for word in ("-f", str(path))]
        profiles = [word for profile in self.profiles for word in ("--profile", profile)]
        return [*compose_executable(), "-p", self.name, *files, *profiles, *args]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args), env=self.env(), cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(self.command(*args))} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.run("config").stdout)

    def services(self) -> dict[str, dict[str, Any]]:
        """The resolved services ``up`` starts: those without a profile or with an active one
        (``docker-compose config`` 1.29 lists every service whatever the profiles)."""
        return {
            name: service
            for name, service in self.config()["services"].items()
            if not service.get("profiles") or set(service["profiles"]) & set(self.profiles)
        }

    def exec(
        self, service: str, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-T", service, *args, timeout=timeout, check=check)

    def containers(self) -> list[dict[str, str]]:
        """Every container of the project, running or not: name, service, state, health."""
        listed = docker(
            "ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.name}", "--format", "{{json .}}"
        ).stdout
        found = []
        for line in listed.splitlines():
            row = json.loads(line)
            inspected = json.loads(docker("inspect", row["ID"]).stdout)[0]
            health = inspected["State"].get("Health", {}).get("Status", "none")
            found.append(
                {
                    "name": row["Names"],
                    "service": inspected["Config"]["Labels"]["com.docker.compose.service"],
                    "state": inspected["State"]["Status"],
                    "health": health,
                }
            )
        return found

    def all_healthy(self, services: set[str]) -> bool:
        containers = self.containers()
        return {c["service"] for c in containers} >= services and all(
            c["health"] == "healthy" for c in containers if c["service"] in services
        )

    def leftovers(self) -> dict[str, list[str]]:
        """What the project still has on the engine: containers, volumes, networks."""
        label = f"label={PROJECT_LABEL}={self.name}"
        return {
            kind: docker(
                kind, "ls", *(["-a"] if kind == "container" else []), "-q", "--filter", label
            ).stdout.split()
            for kind in ("container", "volume", "network")
        }

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", "--timeout", "20", timeout=180, check=False)
