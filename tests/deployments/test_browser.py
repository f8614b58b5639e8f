"""Both UIs in a real browser: Debian's chromium, driven by Playwright, on a freshly trained project.

A real ``mlflow server`` and a real ``prefect server start`` (with its UI) run on free loopback
ports. The project's deployments are created, a quick training (tiny frame, logistic family)
runs through the CLI, and a forced review trains a challenger and pauses for a decision. The
browser then walks the screens a maintainer lives in and fails on an empty or broken page:
each page must show its own content (found by text, waited for, never slept on) and raise no
uncaught script error. Every page is kept as a screenshot under ``test-output/browser/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.factories import raw_frame, write_snapshot
from tests.servers import BIN, REPO, mlflow_server, prefect_server, run, stop

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "test-output" / "browser"
MODEL = "galaxy-morphology"
WAIT_MS = 60_000  # a busy 2-core machine renders slowly; waits end as soon as the text is there


@dataclass(frozen=True)
class Project:
    prefect_ui: str
    mlflow_ui: str
    training_flow_run: str
    review_flow_run: str
    training_deployment: str
    training_parameters: dict[str, dict[str, Any]]  # the deployment's parameter schema, by name
    training_experiment: str


def api(env: dict[str, str], path: str, body: dict[str, object] | None = None) -> object:
    """One call to the Prefect server's REST API (POST when ``body`` is given)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{env['PREFECT_API_URL']}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def flow_runs(env: dict[str, str], flow_name: str) -> list[dict[str, object]]:
    found = api(env, "/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}})
    assert isinstance(found, list)
    return found


def wait_for_paused_review(env: dict[str, str], review: subprocess.Popen, log: Path) -> str:
    """The review's flow run id once it is paused for a decision."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert review.poll() is None, f"the review ended before pausing:\n{log.read_text()[-4000:]}"
        paused = [r for r in flow_runs(env, "galaxy-review") if r["state_type"] == "PAUSED"]
        if paused:
            return str(paused[0]["id"])
        time.sleep(2)
    pytest.fail(f"the review did not pause within 600 s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/provision.sh (`make test` runs it)")
    workdir = tmp_path_factory.mktemp("ui")
    with (
        mlflow_server(f"sqlite:///{workdir / 'mlflow.db'}", workdir / "artifacts", workdir) as mlflow_uri,
        prefect_server(workdir, ui=True) as prefect_env,
    ):
        env = {
            **prefect_env,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "GALAXY_TRAINING__N_JOBS": "1",
            "GALAXY_TRAINING__FAMILIES": "logistic",
            "GALAXY_HOME": str(REPO),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        snapshot = write_snapshot(raw_frame(120, 60, 20, seed=5), workdir / "gz1.csv")
        run([sys.executable, "deployments/create_work_pool.py"], env)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env)
        run([str(BIN / "galaxy"), "train", "--quick", "--snapshot", str(snapshot)], env, timeout=600)
        log = workdir / "review.log"
        with log.open("w") as sink:
            review = subprocess.Popen(
                [str(BIN / "galaxy"), "review", "--force", "--quick", "--snapshot", str(snapshot)],
                env=env,
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            review_run = wait_for_paused_review(env, review, log)
            (training_run,) = flow_runs(env, "galaxy-training")
            deployment = api(env, "/deployments/name/galaxy-training/galaxy-training")
            assert isinstance(deployment, dict)
            yield Project(
                prefect_ui=env["PREFECT_API_URL"].removesuffix("/api"),
                mlflow_ui=mlflow_uri,
                training_flow_run=str(training_run["id"]),
                review_flow_run=review_run,
                training_deployment=str(deployment["id"]),
                training_parameters=deployment["parameter_openapi_schema"]["properties"],
                training_experiment=mlflow_experiment_id(mlflow_uri, "galaxy-morphology"),
            )
        finally:
            stop(review)


def mlflow_experiment_id(uri: str, name: str) -> str:
    with urllib.request.urlopen(
        f"{uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}", timeout=30
    ) as answer:
        return str(json.load(answer)["experiment"]["experiment_id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no remembered UI choices) that fails the test on a script error;
    the page is kept as a screenshot named after the test, whatever the outcome."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
        context.close()
    assert not errors, f"uncaught script errors on {page.url}: {errors}"


def open_page(page: Page, url: str, *texts: str) -> None:
    """Go to ``url`` and wait until every one of ``texts`` is visible: an empty page fails."""
    answer = page.goto(url)
    assert answer is not None and answer.ok, f"{url}: HTTP {answer and answer.status}"
    for text in texts:
        expect(page.get_by_text(text, exact=False).first).to_be_visible()


def test_prefect_training_run_shows_its_artifacts(project: Project, page: Page) -> None:
    open_page(page, f"{project.prefect_ui}/runs/flow-run/{project.training_flow_run}", "galaxy-training")
    page.get_by_text("Artifacts", exact=True).click()
    expect(page.get_by_text("cleaning-drops").first).to_be_visible()
    page.get_by_text("training-summary").first.click()  # the artifact's own page: its markdown
    expect(page.get_by_text("Training run: winner logistic").first).to_be_visible()


def test_prefect_deployment_form_shows_every_parameter_and_its_description(
    project: Project, page: Page
) -> None:
    open_page(
        page,
        f"{project.prefect_ui}/deployments/deployment/{project.training_deployment}/run",
        "galaxy-training",
        "Parameters",
    )
    assert {"snapshot", "quick", "families"} <= set(project.training_parameters)
    for name, spec in project.training_parameters.items():
        expect(page.get_by_text(name, exact=False).first).to_be_visible()
        assert spec.get("description"), f"parameter {name} has no description"
        expect(page.get_by_text(description_start(spec["description"]), exact=False).first).to_be_visible()


def description_start(description: str) -> str:
    """The first words of a parameter's description as the form renders it (markdown, one line)."""
    words = description.replace("`", "").replace("*", "").split()
    return " ".join(words[:4])


def test_prefect_paused_review_opens_its_resume_form(project: Project, page: Page) -> None:
    open_page(
        page, f"{project.prefect_ui}/runs/flow-run/{project.review_flow_run}", "galaxy-review", "Paused"
    )
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    for field in ("approve", "reviewer", "comment"):
        expect(dialog.get_by_text(field, exact=False).first).to_be_visible()
    expect(dialog.get_by_role("button", name="Submit")).to_be_visible()


def test_mlflow_experiment_opens_on_its_training_runs(project: Project, page: Page) -> None:
    open_page(
        page,
        f"{project.mlflow_ui}/#/experiments/{project.training_experiment}?workflowType=machine_learning",
        "galaxy-morphology",
    )
    # the runs tell who started them: the command line's training, the review's challenger
    expect(page.get_by_text("training-cli-quick-logistic-").first).to_be_visible()
    expect(page.get_by_text("training-review-quick-logistic-").first).to_be_visible()


def test_mlflow_registered_model_shows_its_aliases(project: Project, page: Page) -> None:
    open_page(page, f"{project.mlflow_ui}/#/models/{MODEL}", MODEL, "Version 2")
    expect(page.get_by_text("@ champion").first).to_be_visible()
    expect(page.get_by_text("@ challenger").first).to_be_visible()
