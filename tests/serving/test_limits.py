"""The real scoring server under malformed and hostile requests: a clean 4xx each, and it stays up.

Also: request-supplied column names never reach the server's log, and valid requests get
the same answers from the guarded app (its fast path included) as from MLflow's own scoring app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest
import requests
from fastapi.testclient import TestClient
from mlflow.pyfunc import scoring_server

from galaxy_morphology.core.settings import ServingSettings
from galaxy_morphology.io.model_files import download_model, load_model_folder
from galaxy_morphology.serving.app import KnownColumnsOnly, fast_path
from galaxy_morphology.serving.fast_path import FastPath
from galaxy_morphology.serving.guard import INLINE_ROWS, Guard, Limits
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
    assert Limits() == limits_of(defaults)  # the serving image's limits, without the settings
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


class CountingFastPath(FastPath):
    """The real fast path, counting the requests it answered itself."""

    answered = 0

    def answer(self, content_type: str, payload: object) -> bytes | None:
        result = super().answer(content_type, payload)
        self.answered += result is not None
        return result


@dataclass(frozen=True)
class Apps:
    """In process, on the same checked model: MLflow's own scoring app, the guarded app without
    the fast path, and the guarded app with it (the server's)."""

    stock: TestClient
    plain: TestClient
    guarded: TestClient
    fast: CountingFastPath


@pytest.fixture(scope="module")
def apps(trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Apps:
    folder = download_model(CHAMPION_URI, tmp_path_factory.mktemp("model"), trained_store.tracking_uri)
    model = load_model_folder(folder)
    built = fast_path(model)
    assert built is not None and built.enabled  # the project's pyfunc: a signature of doubles
    fast = CountingFastPath(built.model, dict.fromkeys(built.columns, "double"))
    scoring_app = scoring_server.init(KnownColumnsOnly(model))
    return Apps(
        stock=TestClient(scoring_server.init(model)),
        plain=TestClient(Guard(scoring_app, TEST_LIMITS)),
        guarded=TestClient(Guard(scoring_app, TEST_LIMITS, fast)),
        fast=fast,
    )


def split(rows: list[dict[str, float]], **options: bool) -> str:
    frame = pd.DataFrame(rows)
    if options.get("reversed"):
        frame = frame[list(reversed(frame.columns))]
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=options["index"]))})


# (body, content type, answered by the fast path)
VALID = {
    "records": (json.dumps({"dataframe_records": records(3)}), "application/json", True),
    "one record": (json.dumps({"dataframe_records": records(1)}), "application/json", True),
    "more records than are scored inline": (
        json.dumps({"dataframe_records": records(4) * (INLINE_ROWS // 4 + 1)}),
        "application/json",
        True,
    ),
    "split with index": (split(records(2), index=True), "application/json", True),
    "split, columns reversed": (split(records(3), index=False, reversed=True), "application/json", True),
    "records, utf-8": (
        json.dumps({"dataframe_records": records(2)}),
        "application/json; charset=UTF-8",
        True,
    ),
    "an integer value": (
        json.dumps({"dataframe_records": [dict(records(1)[0], mag_r=17)]}),
        "application/json",
        False,
    ),
    "an extra column": (
        json.dumps({"dataframe_records": [dict(row, note="text") for row in records(2)]}),
        "application/json",
        True,
    ),
    "a boolean (MLflow reads it as 1.0)": (
        json.dumps({"dataframe_records": [dict(records(1)[0], deVAB_r=True)]}),
        "application/json",
        False,
    ),
    "params": (json.dumps({"dataframe_records": records(2), "params": {}}), "application/json", False),
    "inputs": (json.dumps({"inputs": records(2)}), "application/json", False),
    "instances": (json.dumps({"instances": records(2)}), "application/json; charset=utf-8", False),
    "csv": (pd.DataFrame(records(4)).to_csv(index=False), "text/csv", False),
}


@pytest.mark.parametrize("case", list(VALID))
def test_valid_requests_get_mlflows_own_answers(apps: Apps, case: str) -> None:
    body, content_type, fast_answer = VALID[case]
    stock, guarded, fast = apps.stock, apps.guarded, apps.fast
    expected = stock.post("/invocations", content=body, headers={"Content-Type": content_type})
    before = fast.answered
    answer = guarded.post("/invocations", content=body, headers={"Content-Type": content_type})
    assert expected.status_code == 200, expected.text
    assert (answer.status_code, answer.content, answer.headers["content-type"]) == (
        expected.status_code,
        expected.content,
        expected.headers["content-type"],
    )
    assert fast.answered - before == fast_answer


def bad(**changes: object) -> list[dict[str, object]]:
    return [dict(records(1)[0], **changes)]


# requests MLflow's app or the model refuses: the fast path leaves every one to them
REFUSED = {
    "a missing column": {"dataframe_records": [{k: v for k, v in records(1)[0].items() if k != "mag_r"}]},
    "text in a number column": {"dataframe_records": bad(redshift="far")},
    "NaN": {"dataframe_records": bad(redshift=float("nan"))},
    "an axis ratio above 1": {"dataframe_records": bad(deVAB_r=1.5)},
    "a catalogue sentinel": {"dataframe_records": bad(stellar_mass=-9999.0)},
    "no rows": {"dataframe_records": []},
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_requests_keep_their_status_and_message(apps: Apps, case: str) -> None:
    body = json.dumps(REFUSED[case])  # NaN as JSON's NaN, which Python and MLflow read
    headers = {"Content-Type": "application/json"}
    before = apps.fast.answered
    expected = apps.plain.post("/invocations", content=body, headers=headers)
    answer = apps.guarded.post("/invocations", content=body, headers=headers)
    assert 400 <= expected.status_code < 500, expected.text
    assert answer.status_code == expected.status_code
    assert answer.json()["message"] == expected.json()["message"]
    assert "stack_trace" not in answer.json()
    assert apps.fast.answered == before


def test_the_fast_path_declines_a_column_named_twice(
    apps: Apps,
) -> None:
    fast = apps.fast
    row = records(1)[0]
    columns = [*row, fast.columns[0]]
    data = [[*row.values(), 1.5]]
    assert fast.table({"dataframe_split": {"columns": columns[:-1], "data": [data[0][:-1]]}}) is not None
    assert fast.table({"dataframe_split": {"columns": columns, "data": data}}) is None


@pytest.mark.parametrize("path", ["/ping", "/health", "/version"])
def test_other_endpoints_are_mlflows(apps: Apps, path: str) -> None:
    stock, guarded = apps.stock, apps.guarded
    assert (guarded.get(path).status_code, guarded.get(path).content) == (200, stock.get(path).content)
