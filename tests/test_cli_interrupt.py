"""Ctrl-C or `kill` of a command: nothing keeps running, and no run claims to be running or done."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.factories import raw_frame, write_snapshot

REPO = Path(__file__).resolve().parents[1]


def rows(database: Path, query: str) -> list[tuple]:
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        try:
            return connection.execute(query).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_training_leaves_no_process_and_no_running_run(
    tmp_path: Path, sig: signal.Signals
) -> None:
    snapshot = write_snapshot(raw_frame(400, 200, 0, seed=3), tmp_path / "gz1.csv")
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "data": {"source": "snapshot", "snapshot_path": str(snapshot)},
                "training": {"families": ["random_forest"], "n_iter": 40, "cv_folds": 10},
                "mlflow": {
                    "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "artifact_root": str(tmp_path),
                },
            }
        )
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_", "GALAXY_"))
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    log = tmp_path / "train.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "galaxy_morphology.cli", "train", "--settings", str(settings)],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while not rows(tmp_path / "mlflow.db", "SELECT run_uuid FROM runs WHERE status = 'RUNNING'"):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the training run never started:\n" + log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # into the searches: search workers are running now
        process.send_signal(sig)
        process.wait(timeout=120)
        deadline = time.monotonic() + 30
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert not group_alive(process.pid), "a server or worker outlived the command:\n" + output[-3000:]
    assert process.returncode != 0
    assert "interrupted" in output
    assert rows(tmp_path / "mlflow.db", "SELECT status FROM runs") == [("KILLED",)]
    states = rows(tmp_path / "prefect" / "prefect.db", "SELECT state_type FROM flow_run")
    assert states and {state for (state,) in states} <= {"CRASHED", "CANCELLED", "FAILED"}, states
