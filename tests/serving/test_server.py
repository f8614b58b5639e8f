"""The real MLflow scoring server for the champion: answers, and refusals with a 4xx naming the field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

import galaxy_morphology
from galaxy_morphology.core.schema import FEATURE_COLUMNS
from galaxy_morphology.core.settings import load_settings
from galaxy_morphology.io.registry import in_service_uri
from galaxy_morphology.serving.server import (
    BIN_DIR,
    THREAD_VARIABLES,
    ScoringServer,
    ServerError,
    free_port,
    serve_command,
    serve_env,
    start_server,
)
from tests.factories import raw_frame
from tests.serving.adversarial import still_scores
from tests.serving.champion import CHAMPION_URI, TrainedStore

REPO_ROOT = Path(__file__).resolve().parents[2]
JSON_TYPE = "application/json"


def records(n: int = 3) -> list[dict[str, Any]]:
    """Raw catalogue rows (every column, not only the features), as a client would send them."""
    return json.loads(raw_frame(n_spiral=2, n_elliptical=2, n_uncertain=0).head(n).to_json(orient="records"))


def invoke(server: ScoringServer, body: str | bytes, content_type: str = JSON_TYPE) -> requests.Response:
    return requests.post(
        f"{server.url}/invocations", data=body, headers={"Content-Type": content_type}, timeout=30
    )


def assert_predictions(response: requests.Response, n: int) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == n
    for prediction in predictions:
        assert set(prediction) == {"label", "p_elliptical"}
        assert prediction["label"] in ("elliptical", "spiral")
        assert 0.0 <= prediction["p_elliptical"] <= 1.0
        assert (prediction["label"] == "elliptical") == (prediction["p_elliptical"] >= 0.5)
    return predictions


# --------------------------------------------------------------------------- unit: the command


def test_serve_command_uses_this_environment() -> None:
    command = serve_command("127.0.0.1", 5123, workers=2)
    assert command[0] == str(BIN_DIR / "uvicorn")
    assert command[1:] == [
        *("--app-dir", str(Path(galaxy_morphology.__file__).resolve().parents[1])),
        *("--factory", "galaxy_morphology.serving.app:create_app"),
        *("--host", "127.0.0.1", "--port", "5123", "--workers", "2"),
    ]
    env = serve_env("sqlite:////tmp/x.db", base={"PATH": "/usr/bin", "OMP_NUM_THREADS": "8"})
    assert env["PATH"].split(os.pathsep)[0] == str(BIN_DIR)
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/x.db"
    assert [env[name] for name in THREAD_VARIABLES] == ["1", "1", "1"]  # the caller's 8 is replaced
    assert serve_env("sqlite:///y.db", base={})["PATH"] == str(BIN_DIR)
    assert serve_env("sqlite:///y.db", threads=3, base={})["OMP_NUM_THREADS"] == "3"


def test_a_package_folder_in_the_working_directory_is_not_served(
    trained_store: TrainedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn puts its working directory first on ``sys.path``: a decoy package there must
    not be what the server imports."""
    decoy = tmp_path / "galaxy_morphology"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy package was imported')\n")
    monkeypatch.chdir(tmp_path)
    server = start_server(
        CHAMPION_URI, trained_store.tracking_uri, log_path=tmp_path / "server.log", timeout=120
    )
    try:
        assert still_scores(server.url)
    finally:
        server.stop()
    assert "decoy" not in (tmp_path / "server.log").read_text(errors="replace")


def test_every_server_process_gets_one_thread_per_worker(scoring_server: ScoringServer) -> None:
    """``uvicorn`` and its workers all see the thread limit."""
    group = os.getpgid(scoring_server.process.pid)
    members = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _process_group(int(entry.name)) == group
    ]
    commands = [(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")) for pid in members]
    assert any(b"uvicorn" in command for command in commands), commands
    for pid in members:
        environ = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        assert environ[b"OMP_NUM_THREADS"] == b"1", pid


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_default_model_uri_follows_settings(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("mlflow:\n  model_name: gm\n  model_alias: staging\n")
    assert in_service_uri(load_settings(path=path)) == "models:/gm@staging"


# --------------------------------------------------------------------------- the live server


@pytest.mark.parametrize("path", ["/ping", "/health", "/version"])
def test_health_endpoints(scoring_server: ScoringServer, path: str) -> None:
    response = requests.get(scoring_server.url + path, timeout=10)
    assert response.status_code == 200, response.text


def test_dataframe_records_of_raw_rows(scoring_server: ScoringServer) -> None:
    assert_predictions(invoke(scoring_server, json.dumps({"dataframe_records": records(3)})), 3)


def test_dataframe_split_and_csv_agree_with_records(scoring_server: ScoringServer) -> None:
    frame = pd.DataFrame(records(4))
    by_records = assert_predictions(invoke(scoring_server, json.dumps({"dataframe_records": records(4)})), 4)
    split = json.loads(frame.to_json(orient="split", index=False))
    by_split = assert_predictions(invoke(scoring_server, json.dumps({"dataframe_split": split})), 4)
    by_csv = assert_predictions(invoke(scoring_server, frame.to_csv(index=False), "text/csv"), 4)
    for other in (by_split, by_csv):
        assert [p["label"] for p in other] == [p["label"] for p in by_records]
        assert [p["p_elliptical"] for p in other] == pytest.approx([p["p_elliptical"] for p in by_records])


def test_feature_columns_alone_are_enough(scoring_server: ScoringServer) -> None:
    only = [{name: row[name] for name in FEATURE_COLUMNS} for row in records(2)]
    assert_predictions(invoke(scoring_server, json.dumps({"dataframe_records": only})), 2)


def test_unknown_extra_column_is_ignored(scoring_server: ScoringServer) -> None:
    """Inputs outside the signature are dropped before MLflow's schema check (test_limits: not logged)."""
    plain = assert_predictions(invoke(scoring_server, json.dumps({"dataframe_records": records(2)})), 2)
    extra = [dict(row, colour="red", surprise=1.5) for row in records(2)]
    with_extra = assert_predictions(invoke(scoring_server, json.dumps({"dataframe_records": extra})), 2)
    assert with_extra == plain


def _row(**changes: Any) -> dict[str, Any]:
    return dict(records(1)[0], **changes)


def _without(name: str) -> dict[str, Any]:
    row = records(1)[0]
    del row[name]
    return row


BAD_REQUESTS: dict[str, tuple[str | bytes, str, tuple[str, ...]]] = {
    # case -> (body, content type, words the message must hold)
    "missing column": (
        json.dumps({"dataframe_records": [_without("mag_r")]}),
        "application/json",
        ("missing inputs", "mag_r"),
    ),
    "string for a number": (
        json.dumps({"dataframe_records": [_row(mag_r="bright")]}),
        "application/json",
        ("mag_r", "bright"),
    ),
    "null": (
        json.dumps({"dataframe_records": [_row(mag_r=None)]}),
        "application/json",
        ("mag_r", "missing value"),
    ),
    "JSON NaN": (
        json.dumps({"dataframe_records": [_row(redshift=float("nan"))]}),
        "application/json",
        ("redshift", "missing value"),
    ),
    "JSON Infinity": (
        json.dumps({"dataframe_records": [_row(mag_g=float("inf"))]}),
        "application/json",
        ("mag_g", "infinite"),
    ),
    "-9999 sentinel": (
        json.dumps({"dataframe_records": [_row(stellar_mass=-9999.0)]}),
        "application/json",
        ("stellar_mass", "-9999"),
    ),
    "axis ratio 1.5": (
        json.dumps({"dataframe_records": [_row(deVAB_r=1.5)]}),
        "application/json",
        ("deVAB_r", "axis ratio 1.5"),
    ),
    "empty list": (
        json.dumps({"dataframe_records": []}),
        "application/json",
        ("missing inputs", "redshift"),
    ),
    "malformed JSON": ('{"dataframe_records": [', "application/json", ("valid JSON",)),
    "no input key": (
        json.dumps({"rows": records(1)}),
        "application/json",
        ("dataframe_records", "dataframe_split"),
    ),
    "wrong content type": (json.dumps({"dataframe_records": records(1)}), "text/plain", ("content types",)),
    "csv with a word": (
        pd.DataFrame(records(2)).assign(mag_i="faint").to_csv(index=False),
        "text/csv",
        ("faint",),
    ),
    "one bad row of three": (
        json.dumps({"dataframe_records": [*records(2), _row(expRad_r=0.0)]}),
        "application/json",
        ("row 2", "expRad_r", "not positive"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_naming_the_problem(scoring_server: ScoringServer, case: str) -> None:
    body, content_type, words = BAD_REQUESTS[case]
    response = invoke(scoring_server, body, content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    for word in words:
        assert word in response.text, (word, response.text[:2000])
    # the server stays up and still answers a valid request
    assert scoring_server.alive()
    assert_predictions(invoke(scoring_server, json.dumps({"dataframe_records": records(1)})), 1)


def test_start_fails_fast_for_an_unknown_model(trained_store: TrainedStore, tmp_path: Path) -> None:
    """The model is fetched before any process starts: an unknown one fails at once, named."""
    with pytest.raises(ServerError, match="cannot fetch model models:/no-such-model@champion"):
        start_server(
            "models:/no-such-model@champion",
            trained_store.tracking_uri,
            log_path=tmp_path / "server.log",
            timeout=60,
        )
    assert not (tmp_path / "server.log").exists()


def test_galaxy_serve_runs_in_the_foreground_until_sigterm(trained_store: TrainedStore) -> None:
    """``galaxy serve`` with a PATH lacking the venv: it answers, then stops cleanly on SIGTERM."""
    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=trained_store.tracking_uri, PATH="/usr/bin:/bin")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "galaxy_morphology.cli",
            "serve",
            "--port",
            str(port),
            "--model-uri",
            CHAMPION_URI,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300  # a liveness bound, not a speed target
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "galaxy serve did not answer /ping"
            time.sleep(0.3)
        response = requests.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": records(2)}, timeout=30
        )
        assert_predictions(response, 2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/ping", timeout=2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
