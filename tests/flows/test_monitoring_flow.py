"""The monitoring flow end to end: a real champion, real MLflow runs, a real HTTP receiver."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from tests.factories import raw_frame, write_snapshot

MONITORING_EXPERIMENT = "galaxy-morphology-monitoring"
WEBHOOK_ENV = "GALAXY_ALERT_WEBHOOK_URL"
BLOCK_ENV = "GALAXY_MONITORING__NOTIFICATION_BLOCK"


class Receiver:
    """An HTTP server on 127.0.0.1 (port 0) that keeps the JSON body of every POST."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def champion(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A logistic champion trained on a separable synthetic snapshot, in a temporary MLflow store."""
    root = tmp_path_factory.mktemp("monitoring")
    overrides = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "GALAXY_MLFLOW__ARTIFACT_ROOT": str(root / "mlartifacts"),
        "GALAXY_MONITORING__REPORTS_DIR": str(root / "reports"),
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        from galaxy_morphology.flows.training import training_flow

        snapshot = write_snapshot(raw_frame(60, 60, 6, seed=1), root / "snapshot.csv")
        training_flow(quick=True, families=["logistic"], snapshot=str(snapshot))
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def healthy(seed: int = 7) -> pd.DataFrame:
    return raw_frame(60, 60, 4, seed=seed)


def degraded(seed: int = 8, share: float = 0.45) -> pd.DataFrame:
    """Labels flipped (spiral <-> elliptical) on ``share`` of the rows."""
    frame = raw_frame(60, 60, 0, seed=seed)
    flipped = frame.sample(frac=share, random_state=seed).index
    frame.loc[flipped, ["spiral", "elliptical"]] = frame.loc[flipped, ["elliptical", "spiral"]].to_numpy()
    return frame


def monitoring_runs() -> list:
    from mlflow.tracking import MlflowClient

    tracking = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = tracking.get_experiment_by_name(MONITORING_EXPERIMENT)
    if experiment is None:
        return []
    return tracking.search_runs([experiment.experiment_id])


@pytest.fixture
def webhook_only(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> Receiver:
    monkeypatch.setenv(BLOCK_ENV, "no-such-monitoring-block")
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    return receiver


def report_artifact(flow_run_id: object) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    key = ArtifactFilterKey(any_=["monitoring-report"])
    only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=key)
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=only)
    return str(artifact.data)


def test_healthy_batch_passes_and_records_a_run(
    champion: Path, webhook_only: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from galaxy_morphology.flows.monitoring import monitoring_flow

    ui = "http://mlflow.example.org:5000"
    monkeypatch.setenv("GALAXY_MLFLOW__UI_URL", ui)
    path = write_snapshot(healthy(), champion / "healthy.parquet")
    state = monitoring_flow(batch_path=str(path), return_state=True)
    result = state.result()

    assert result.status == "pass", result.checks
    assert {c.metric: c.status for c in result.checks} == {
        "f1_macro": "pass",
        "recall_elliptical": "pass",
        "roc_auc": "pass",
        "drift_share": "pass",
        "agreement_spearman": "not applicable",  # 4 unlabelled rows < min_rows
    }
    assert webhook_only.bodies == []
    assert result.reference.startswith("runs:/")  # the training run logs its reference table
    tracking = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = tracking.get_run(result.run_id)
    assert run.data.metrics["f1_macro"] >= 0.9 and "drift_share" in run.data.metrics
    assert "confusion.true_elliptical_predicted_elliptical" in run.data.metrics
    assert {key: value for key, value in run.data.metrics.items() if key.startswith("check_passed.")} == {
        "check_passed.f1_macro": 1.0,
        "check_passed.recall_elliptical": 1.0,
        "check_passed.roc_auc": 1.0,
        "check_passed.drift_share": 1.0,
    }
    assert not any(key.startswith(("check_failed.", "rows.")) for key in run.data.metrics)
    assert run.data.tags["galaxy.monitoring.check.f1_macro"] == "pass"
    rows = {f"rows.{key}": str(count) for key, count in result.counts.items()}
    assert rows.items() <= run.data.params.items()
    assert run.data.tags["galaxy.model.version"] == result.model_version
    assert run.data.tags["galaxy.batch.digest"] == result.batch_digest
    assert run.data.tags["galaxy.monitoring.status"] == "pass"
    artifacts = {item.path for item in tracking.list_artifacts(result.run_id, "report")}
    assert {"report/evidently_report.html", "report/values.json"} <= artifacts
    assert Path(result.html).exists() and Path(result.report_dir).parent == champion / "reports"
    # the Prefect artifact links to the run, the version and the Evidently report logged to it
    markdown = report_artifact(state.state_details.flow_run_id)
    experiment = run.info.experiment_id
    assert f"]({ui}/#/runs/{result.run_id})" in markdown
    assert f"]({ui}/#/models/galaxy-morphology/versions/{result.model_version})" in markdown
    page = f"{ui}/#/experiments/{experiment}/runs/{result.run_id}"
    assert f"]({page}/artifactPath/report/evidently_report.html)" in markdown


def test_degraded_batch_sends_one_webhook_notification(champion: Path, webhook_only: Receiver) -> None:
    from galaxy_morphology.flows.monitoring import monitoring_flow

    path = write_snapshot(degraded(), champion / "degraded.csv.gz")
    result = monitoring_flow(batch_path=str(path))

    assert result.status == "breach"
    breached = {c.metric for c in result.breached}
    assert {"f1_macro", "recall_elliptical", "roc_auc"} <= breached
    assert len(webhook_only.bodies) == 1
    message = webhook_only.bodies[0]
    assert message["model_version"] == result.model_version
    assert {item["metric"] for item in message["breaches"]} == breached
    for metric in breached:
        assert metric in message["body"]
    assert result.report_dir in message["report"]
    assert result.delivery is not None and result.delivery.channel == f"webhook:{WEBHOOK_ENV}"


def test_degraded_batch_notifies_through_the_prefect_block(
    champion: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    from deployments.create_notification_block import create_block
    from galaxy_morphology.flows.monitoring import monitoring_flow

    fallback = Receiver()
    try:
        create_block(receiver.url, "galaxy-monitoring-test-alerts")
        create_block(receiver.url, "galaxy-monitoring-test-alerts")  # idempotent
        monkeypatch.setenv(BLOCK_ENV, "galaxy-monitoring-test-alerts")
        monkeypatch.setenv(WEBHOOK_ENV, fallback.url)
        path = write_snapshot(degraded(seed=9), champion / "degraded-block.csv")
        result = monitoring_flow(batch_path=str(path))
    finally:
        fallback.close()

    assert result.status == "breach"
    assert fallback.bodies == []
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]["body"]
    assert "f1_macro" in body and f"version {result.model_version}" in body
    assert "monitoring" in receiver.bodies[0]["subject"]


def test_skyserver_window_is_monitored_through_astroquery(
    champion: Path, webhook_only: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window of the SkyServer table (rows after a specobjid) is a batch like a file."""
    from galaxy_morphology.flows.monitoring import monitoring_flow
    from tests.standin_skyserver import running

    monkeypatch.setenv("GALAXY_DATA__CACHE_DIR", str(champion / "skyserver-cache"))
    with running(degraded(seed=9)) as server:
        after = int(server.tables.zoo_spec["specobjid"].sort_values().iloc[9])
        monkeypatch.setenv("GALAXY_SKYSERVER__BASE_URL", server.base_url)
        result = monitoring_flow(after_specobjid=after, rows=100)
        sent = [entry.sql for entry in server.page_requests()]
    assert result.counts["raw"] == 100
    assert sent and f"zs.specobjid > {after}" in sent[0]
    assert result.status == "breach"
    assert len(webhook_only.bodies) == 1
    assert f"specobjid>{after}" in json.dumps(webhook_only.bodies[0])


def test_window_needs_both_bounds_and_no_file(champion: Path, webhook_only: Receiver) -> None:
    from galaxy_morphology.flows.monitoring import monitoring_flow
    from galaxy_morphology.monitoring.batch import BatchError

    before = len(monitoring_runs())
    with pytest.raises(BatchError, match="after_specobjid and rows"):
        monitoring_flow(after_specobjid=5)
    with pytest.raises(BatchError, match="batch file, or a SkyServer window"):
        monitoring_flow()
    assert len(monitoring_runs()) == before


def test_small_batch_is_insufficient_and_never_alerted(champion: Path, webhook_only: Receiver) -> None:
    from galaxy_morphology.flows.monitoring import monitoring_flow

    small = degraded(seed=10).groupby("elliptical").head(8)  # 16 rows: below min_rows 50
    result = monitoring_flow(batch_path=str(write_snapshot(small, champion / "small.csv")))
    assert result.status == "insufficient" and "min_rows" in result.insufficient
    statuses = {c.status for c in result.checks}
    # the label checks cannot be judged; agreement has no unlabelled rows to judge: never a pass
    assert "insufficient" in statuses and statuses <= {"insufficient", "not applicable"}
    assert webhook_only.bodies == []


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("no-flags.csv", lambda f: f.drop(columns=["spiral", "elliptical"]), "missing label column"),
        ("wrong-type.csv", lambda f: f.assign(stellar_mass="heavy"), "'stellar_mass': expected numbers"),
    ],
)
def test_bad_batch_fails_without_a_monitoring_run(
    champion: Path, webhook_only: Receiver, name: str, change, message: str
) -> None:
    from galaxy_morphology.flows.monitoring import monitoring_flow
    from galaxy_morphology.monitoring.batch import BatchError

    before = len(monitoring_runs())
    path = write_snapshot(change(healthy()), champion / name)
    with pytest.raises(BatchError, match=message):
        monitoring_flow(batch_path=str(path))
    assert len(monitoring_runs()) == before
    assert webhook_only.bodies == []


def test_cli_monitor_prints_checks_and_refuses_a_bad_batch(champion: Path, webhook_only: Receiver) -> None:
    from typer.testing import CliRunner

    from galaxy_morphology.cli import app

    runner = CliRunner()
    good = write_snapshot(healthy(seed=12), champion / "cli-healthy.csv")
    result = runner.invoke(app, ["monitor", "--batch", str(good)])
    assert result.exit_code == 0, result.output
    assert "status: pass" in result.output and "f1_macro" in result.output
    bad = write_snapshot(healthy().drop(columns=["uncertain"]), champion / "cli-bad.csv")
    result = runner.invoke(app, ["monitor", "--batch", str(bad)])
    assert result.exit_code == 2
    assert "missing label column(s) uncertain" in result.output


def test_without_a_reference_artifact_the_training_snapshot_is_rebuilt(
    champion: Path, webhook_only: Receiver
) -> None:
    """Runs last: it removes ``reference/reference.parquet`` from the champion's training run."""
    import shutil

    from mlflow.tracking import MlflowClient

    from galaxy_morphology.flows.monitoring import monitoring_flow

    tracking = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    version = tracking.get_model_version_by_alias("galaxy-morphology", "champion")
    artifacts = tracking.get_run(version.run_id).info.artifact_uri.removeprefix("file://")
    shutil.rmtree(Path(artifacts) / "reference")

    result = monitoring_flow(batch_path=str(write_snapshot(healthy(seed=11), champion / "healthy-2.csv")))
    assert result.reference.startswith("snapshot:")
    assert result.status == "pass" and webhook_only.bodies == []


def test_a_failing_webhook_is_retried_reported_and_never_doubles_the_events(
    champion: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from galaxy_morphology.cli import app

    broken = Receiver(status=500)
    monkeypatch.setenv(BLOCK_ENV, "no-such-monitoring-block")
    monkeypatch.setenv(WEBHOOK_ENV, broken.url)
    events: list[str] = []
    monkeypatch.setattr(
        "galaxy_morphology.monitoring.alerts.emit_breaches",
        lambda breached, *args: events.extend(check.metric for check in breached) or len(breached),
    )
    try:
        path = write_snapshot(degraded(seed=21), champion / "degraded-500.csv")
        result = CliRunner().invoke(app, ["monitor", "--batch", str(path)])
    finally:
        broken.close()
    assert result.exit_code == 1, result.output
    assert "status: breach" in result.output
    assert "alert: NOT delivered (webhook:GALAXY_ALERT_WEBHOOK_URL: not delivered:" in result.output
    assert len(broken.bodies) == 3  # the first attempt and two retries
    assert sorted(events) == sorted(set(events)) and events  # each breach emitted exactly once


def test_cli_exits_3_when_the_batch_cannot_be_judged(champion: Path, webhook_only: Receiver) -> None:
    from typer.testing import CliRunner

    from galaxy_morphology.cli import app

    path = write_snapshot(raw_frame(8, 8, 0, seed=22), champion / "too-small.csv")
    result = CliRunner().invoke(app, ["monitor", "--batch", str(path)])
    assert result.exit_code == 3, result.output
    assert "status: insufficient" in result.output
    assert webhook_only.bodies == []


def test_a_batch_with_vote_fractions_and_no_flags_is_judged_by_agreement(
    champion: Path, webhook_only: Receiver
) -> None:
    from galaxy_morphology.flows.monitoring import monitoring_flow

    votes_only = raw_frame(40, 40, 0, seed=12).drop(columns=["spiral", "elliptical", "uncertain"])
    result = monitoring_flow(batch_path=str(write_snapshot(votes_only, champion / "votes.csv")))
    statuses = {c.metric: c.status for c in result.checks}
    assert statuses.pop("agreement_spearman") == "pass"
    assert set(statuses.values()) == {"not applicable"}  # label metrics and drift need labels
    assert result.status == "pass" and result.values["agreement_spearman"] > 0.5
    assert result.counts["labelled"] == 0 and result.counts["unlabelled"] == 80

    shuffled = votes_only.assign(
        p_el_debiased=votes_only["p_el_debiased"].sample(frac=1, random_state=0).to_numpy()
    )
    shuffled["p_cs_debiased"] = 1 - shuffled["p_el_debiased"]
    breached = monitoring_flow(batch_path=str(write_snapshot(shuffled, champion / "shuffled.csv")))
    assert breached.status == "breach" and [c.metric for c in breached.breached] == ["agreement_spearman"]
    assert len(webhook_only.bodies) == 1
