"""The real scoring server under malformed and hostile requests: a clean 4xx each, and it stays up.

Also: request-supplied column names never reach the server's log, and valid requests get
the same answers from the guarded app as from MLflow's own scoring app.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import requests
from fastapi.testclient import TestClient
from mlflow.pyfunc import scoring_server

from galaxy_morphology.core.settings import ServingSettings
from galaxy_morphology.io.model_files import download_model, load_model_folder
from galaxy_morphology.serving.app import KnownColumnsOnly
from galaxy_morphology.serving.guard import Guard, Limits
from galaxy_morphology.serving.server import ScoringServer, limits_of
from tests.serving.adversarial import cases, problems, records, still_scores
from tests.serving.champion import CHAMPION_URI, TrainedStore
from tests.serving.conftest import TEST_LIMITS

CASES = cases(TEST_LIMITS.max_request_bytes, TEST_LIMITS.body_timeout_seconds)


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_request_gets_a_clean_4xx_and_the_server_stays_up(
    scoring_server: ScoringServer, case: str
) -> None:
    send, expected = CASES[case]
    answer = send(scoring_server.url)
    assert problems(answer, expected) == [], answer.body[:2000]
    assert scoring_server.alive()
    assert still_scores(scoring_server.url)


def test_the_default_limits_come_from_the_settings() -> None:
    defaults = ServingSettings()
    assert limits_of(defaults) == Limits(8 * 1024 * 1024, 10_000, 10.0)
    assert TEST_LIMITS.max_request_bytes == defaults.max_request_bytes  # the cases exercise the real size


def test_the_largest_allowed_request_is_scored(scoring_server: ScoringServer) -> None:
    rows = records(4) * (TEST_LIMITS.max_records // 4)
    response = requests.post(
        f"{scoring_server.url}/invocations", json={"dataframe_records": rows}, timeout=300
    )
    assert response.status_code == 200, response.text[:2000]
    assert len(response.json()["predictions"]) == TEST_LIMITS.max_records


def test_request_column_names_never_reach_the_log(scoring_server: ScoringServer) -> None:
    name = "client_column_7f3a9c"
    rows = [dict(row, **{name: 1.5}) for row in records(2)]
    for body in (
        {"dataframe_records": rows},
        {"dataframe_split": json.loads(pd.DataFrame(rows).to_json(orient="split", index=False))},
    ):
        response = requests.post(f"{scoring_server.url}/invocations", json=body, timeout=30)
        assert response.status_code == 200, response.text
    csv = pd.DataFrame(rows).to_csv(index=False)
    response = requests.post(
        f"{scoring_server.url}/invocations", data=csv, headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert scoring_server.log_path is not None
    log = scoring_server.log_path.read_text(errors="replace")
    assert "POST /invocations" in log  # the log is written: the access lines are there
    assert name not in log
    assert "extra inputs" not in log


@pytest.fixture(scope="module")
def apps(
    trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TestClient, TestClient]:
    """MLflow's own scoring app and the guarded one, in process, on the same checked model."""
    folder = download_model(CHAMPION_URI, tmp_path_factory.mktemp("model"), trained_store.tracking_uri)
    model = load_model_folder(folder)
    stock = TestClient(scoring_server.init(model))
    guarded = TestClient(Guard(scoring_server.init(KnownColumnsOnly(model)), TEST_LIMITS))
    return stock, guarded


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps({"dataframe_records": records(3)}), "application/json"),
        (
            json.dumps({"dataframe_split": json.loads(pd.DataFrame(records(2)).to_json(orient="split"))}),
            "application/json",
        ),
        (json.dumps({"inputs": records(2)}), "application/json"),
        (json.dumps({"instances": records(2)}), "application/json; charset=utf-8"),
        (pd.DataFrame(records(4)).to_csv(index=False), "text/csv"),
    ],
)
def test_valid_requests_get_mlflows_own_answers(
    apps: tuple[TestClient, TestClient], body: str, content_type: str
) -> None:
    stock, guarded = apps
    expected = stock.post("/invocations", content=body, headers={"Content-Type": content_type})
    answer = guarded.post("/invocations", content=body, headers={"Content-Type": content_type})
    assert expected.status_code == 200, expected.text
    assert (answer.status_code, answer.content, answer.headers["content-type"]) == (
        expected.status_code,
        expected.content,
        expected.headers["content-type"],
    )


@pytest.mark.parametrize("path", ["/ping", "/health", "/version"])
def test_other_endpoints_are_mlflows(apps: tuple[TestClient, TestClient], path: str) -> None:
    stock, guarded = apps
    assert (guarded.get(path).status_code, guarded.get(path).content) == (200, stock.get(path).content)
