"""What a person reads from real `galaxy` commands (captured, in a fresh process each).

No usage-report error, no library warnings or download bars; results as aligned tables;
errors as one line with exit code 2. The commands are those of the README: export the data
step's tables, train, then monitor the test split (healthy) and the same rows with their
labels flipped (degraded, exit code 1).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.factories import raw_frame, write_snapshot

# what must never reach the user: usage-report failures, library warnings, tqdm bars,
# setuptools notes, MLflow's own INFO lines, tracebacks
NOISE = re.compile(r"telemetry|Warning|warnings\.warn|\d+%\|| it/s\]|setuptools|INFO mlflow|Traceback")


def galaxy(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MLFLOW_", "GALAXY_", "DO_NOT_TRACK"))
    }
    env["PREFECT_HOME"] = str(workspace / "prefect")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "galaxy_morphology.cli",
            *args,
            "--settings",
            str(workspace / "settings.yaml"),
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def table_rows(output: str, first_header: str) -> list[str]:
    """The lines of the table whose header starts with ``first_header``, up to a blank line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def assert_readable(done: subprocess.CompletedProcess[str]) -> None:
    output = done.stdout + done.stderr
    noise = [line for line in output.splitlines() if NOISE.search(line)]
    assert not noise, "\n".join(noise)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("first-hour")
    snapshot = write_snapshot(raw_frame(400, 200, 40, seed=11), folder / "gz1.csv")
    settings = {
        "data": {"source": "snapshot", "snapshot_path": str(snapshot)},
        "training": {"families": ["logistic", "knn"], "ensemble": False},
        "mlflow": {"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}", "artifact_root": str(folder / "art")},
        "monitoring": {"notification_block": None},
    }
    (folder / "settings.yaml").write_text(yaml.safe_dump(settings))
    return folder


@pytest.mark.integration
def test_ingest_prints_aligned_tables_and_exports_the_splits(workspace: Path) -> None:
    done = galaxy(workspace, "ingest", "--export-dir", "export")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_readable(done)
    steps = table_rows(done.stdout, "step")
    assert re.fullmatch(r"step +rows", steps[0]) and re.fullmatch(r"raw +640", steps[2])
    assert len({len(line) for line in steps}) == 1  # the counts are right-aligned in one column
    files = table_rows(done.stdout, "file")
    assert any(line.startswith("export/test.csv") for line in files)
    assert len(pd.read_csv(workspace / "export" / "test.csv")) == 60


@pytest.mark.integration
def test_train_then_monitor_the_test_split_healthy_and_with_flipped_labels(workspace: Path) -> None:
    trained = galaxy(workspace, "train", "--quick")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert_readable(trained)
    families = table_rows(trained.stdout, "family")
    assert {line.split()[0] for line in families[2:]} == {"logistic", "knn"}
    assert "winner" in trained.stdout and re.search(
        r"^registered: version 1 -> alias 'champion'", trained.stdout, re.M
    )
    assert re.search(r"tuning logistic: 9/9 fits \(100%\), .* elapsed, done", trained.stdout + trained.stderr)

    healthy = galaxy(workspace, "monitor", "--batch", "export/test.csv")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert_readable(healthy)
    assert "status: pass" in healthy.stdout
    checks = table_rows(healthy.stdout, "check")
    assert re.fullmatch(r"f1_macro +\d\.\d{4} +.+ +pass", next(c for c in checks if c.startswith("f1_macro")))

    test = pd.read_csv(workspace / "export" / "test.csv")
    test[["spiral", "elliptical"]] = test[["elliptical", "spiral"]].to_numpy()
    test.to_csv(workspace / "export" / "test_flipped.csv", index=False)
    degraded = galaxy(workspace, "monitor", "--batch", "export/test_flipped.csv")
    assert degraded.returncode == 1, degraded.stdout + degraded.stderr
    assert_readable(degraded)
    assert "status: breach" in degraded.stdout


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--search", "grid"], "error: Invalid value for --search: must be random or halving"),
        (["monitor", "--batch", "nowhere.csv"], "error: batch file not found: nowhere.csv"),
    ],
)
def test_an_error_is_one_line_with_exit_code_2(workspace: Path, args: list[str], message: str) -> None:
    done = galaxy(workspace, *args)
    assert done.returncode == 2
    # the command's error is one line; when the command got as far as a flow run, Prefect's own
    # run log (temporary server start and stop, the failed task's one line) comes before it,
    # without the traceback (the run's log in the Prefect UI keeps that)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
