"""One model reference: with ``mlflow.model_alias: staging`` every command follows that alias.

Training gates ``staging`` (never ``champion``), classify and monitoring score the version
holding ``staging``, the review reviews it, and ``galaxy serve`` serves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from galaxy_morphology.flows.classify import classify_flow
from galaxy_morphology.flows.monitoring import monitoring_flow
from galaxy_morphology.flows.review import review_flow
from galaxy_morphology.flows.training import training_flow
from galaxy_morphology.serving.server import free_port
from tests.factories import raw_frame, write_snapshot

MODEL = "galaxy-morphology"
ALIAS = "staging"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("alias")
    snapshot = write_snapshot(raw_frame(120, 60, 20, seed=5), folder / "gz1.csv")
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    settings = folder / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "data": {"source": "snapshot", "snapshot_path": str(snapshot)},
                "training": {
                    "families": ["logistic"],
                    "ensemble": False,
                    "n_jobs": 1,
                    "permutation_repeats": 1,
                },
                "mlflow": {
                    "tracking_uri": tracking_uri,
                    "artifact_root": str(folder / "artifacts"),
                    "model_alias": ALIAS,
                },
                "monitoring": {"reports_dir": str(folder / "reports"), "notification_block": None},
            }
        )
    )
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield folder, str(settings)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def version_of(folder: Path, alias: str) -> str | None:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    aliases = client.get_registered_model(MODEL).aliases
    return str(aliases[alias]) if alias in aliases else None


def test_every_command_follows_the_configured_alias(store: tuple[Path, str], tmp_path: Path) -> None:
    folder, settings = store
    first = training_flow(quick=True, settings_file=settings)
    assert first.alias == ALIAS
    assert version_of(folder, ALIAS) == first.version
    assert version_of(folder, "champion") is None  # nothing else was promoted

    # the gate compares against the version holding the configured alias
    second = training_flow(quick=True, settings_file=settings)
    assert second.decision.champion_version == first.version
    staged = version_of(folder, ALIAS)

    batch = write_snapshot(raw_frame(40, 20, 0, seed=9), tmp_path / "batch.csv")
    classified = classify_flow(str(batch), str(tmp_path / "out.parquet"), settings_file=settings)
    assert classified.model_uri == f"models:/{MODEL}@{ALIAS}"
    assert classified.model_version == staged
    assert set(pd.read_parquet(tmp_path / "out.parquet")["model_version"]) == {staged}

    monitored = monitoring_flow(batch_path=str(batch), settings_file=settings)
    assert monitored.model_version == staged

    review = review_flow(settings_file=settings)
    assert review.outcome == "not_due"
    assert review.champion_before == staged

    assert served_version(folder, settings) == staged


def served_version(folder: Path, settings: str) -> str:
    """Start ``galaxy serve`` with the settings only (no --model-uri); which version answers?"""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "GALAXY_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "galaxy_morphology.cli", "serve", "--settings", settings, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "galaxy serve did not answer /version in 120 s"
                time.sleep(0.5)
        record = raw_frame(1, 0, 0).drop(columns=["objid"]).to_dict(orient="records")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": record}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert "p_elliptical" in json.loads(answer.read())["predictions"][0]
    finally:
        os.killpg(process.pid, 15)
        output = process.communicate(timeout=30)[0]
    line = next(line for line in output.splitlines() if line.startswith("serving "))
    assert line.startswith(f"serving models:/{MODEL}@{ALIAS} (version ")
    return line.split("(version ", 1)[1].split(")", 1)[0]
