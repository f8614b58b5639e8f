"""The retraining review end to end: real Prefect (test harness), real MLflow on a temporary SQLite store.

The maintainer's decision is supplied the way the Prefect UI does it: a background thread waits
for the review's flow run to be paused, then resumes it with a run input.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from galaxy_morphology.core.review import (
    Breach,
    Budget,
    ChampionInfo,
    Comparison,
    ReviewState,
    challenger_budget,
    decision_record,
    due_reasons,
    form_description,
    how_to_decide,
    is_breach,
    recorded_budget,
)
from galaxy_morphology.core.training import SearchBudget
from galaxy_morphology.flows.review import review_flow
from galaxy_morphology.flows.training import training_flow
from galaxy_morphology.tasks.review import (
    LAST_REVIEW_TAG,
    ReviewDecision,
    ReviewDecisionError,
    decision_form,
    submit_decision,
)
from tests.factories import raw_frame, write_snapshot

MODEL = "galaxy-morphology"
UI = "http://mlflow.example.org:5000"  # the MLflow UI the artifacts link to


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("review")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    yield folder
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


def settings_file(folder: Path, timeout: int) -> str:
    snapshot = folder / "gz1.csv"
    if not snapshot.exists():
        write_snapshot(raw_frame(120, 60, 20, seed=5), snapshot)
    path = folder / f"settings-{timeout}.yaml"
    path.write_text(
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
                    "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
                    "artifact_root": str(folder / "artifacts"),
                    "ui_url": UI,
                },
                "review": {"max_age_days": 365, "decision_timeout_seconds": timeout},
            }
        )
    )
    return str(path)


@pytest.fixture(scope="module")
def settings(store: Path) -> str:
    return settings_file(store, timeout=60)


@pytest.fixture(scope="module")
def trained(prefect_harness: None, store: Path, settings: str) -> Any:
    """The first training's final Prefect state: its flow run holds the training's artifacts."""
    return training_flow(quick=True, settings_file=settings, return_state=True)


@pytest.fixture(scope="module")
def champion(trained: Any) -> str:
    return str(trained.result().version)


def champion_now(store: Path) -> str:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def paused_run_ids() -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    with get_client(sync_client=True) as client:
        return [str(run.id) for run in client.read_flow_runs(flow_run_filter=paused)]


def resume_when_paused(answer: dict[str, Any], limit: float = 300) -> threading.Thread:
    """Decide the first paused flow run with ``answer``, as ``galaxy review decide`` does (from
    another thread)."""

    def resume() -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            runs = paused_run_ids()
            if runs:
                try:
                    submit_decision(runs[0], answer)
                    return
                except ReviewDecisionError:  # the input form may not be saved yet: try again
                    pass
            time.sleep(0.5)

    # the test harness's API URL lives in a context variable: carry it into the thread
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(resume,), daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- pure


def state(age_days: float, breaches: int = 0, last_review: datetime | None = None) -> ReviewState:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    champion = ChampionInfo("3", now - timedelta(days=age_days), None)
    found = [Breach(f"run{n:030d}", now, "f1_macro") for n in range(breaches)]
    return ReviewState(champion, last_review, found)


def test_due_when_older_than_the_limit_or_breached_or_forced() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert due_reasons(state(100), now, 365, force=False) == []
    assert "400 days old" in due_reasons(state(400), now, 365, force=False)[0]
    assert "1 monitoring breach" in due_reasons(state(10, breaches=1), now, 365, force=False)[0]
    assert due_reasons(state(10), now, 365, force=True) == ["forced by the caller"]
    assert due_reasons(ReviewState(None, None, []), now, 365, force=False) == []


def test_breach_tags() -> None:
    assert is_breach({"galaxy.monitoring.status": "breach"})
    assert is_breach({"galaxy.breach": "true"})
    assert not is_breach({"galaxy.monitoring.status": "pass", "galaxy.breach": "false"})


def comparison(champion_f1: float = 0.9541, challenger_f1: float = 0.9358) -> Comparison:
    """Champion v3 (full budget) against challenger v5 (quick), as the issue's browser check saw."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    champion = ChampionInfo("3", at, "run3", Budget("full", "random", 30, 10), "d3", {"test": "144"})
    return Comparison(
        model_name=MODEL,
        champion=champion,
        challenger_version="5",
        challenger_run_id="run5",
        champion_metrics={"f1_macro": champion_f1, "roc_auc": 0.99, "accuracy": 0.96},
        challenger_metrics={"f1_macro": challenger_f1, "roc_auc": 0.98, "accuracy": 0.95},
        counts={"labelled": 1438, "train": 1150, "validation": 144, "test": 144},
        source="snapshot:gz1.csv",
        reasons=["forced by the caller"],
        at=at,
        challenger_budget=SearchBudget("random", 3, 3, 1, 42, name="quick"),
        budget_reason="asked for the quick budget",
        challenger_digest="d5",
    )


def test_the_challenger_gets_the_champions_budget_unless_asked_otherwise() -> None:
    full = SearchBudget("random", 30, 10, -1, 42, name="full")
    quick = SearchBudget("random", 3, 3, -1, 42, name="quick")
    champion = Budget("quick", "halving", 3, 3)
    matched, why = challenger_budget("champion", champion, full, quick)
    assert (matched.name, matched.search, matched.n_iter, matched.cv_folds) == ("quick", "halving", 3, 3)
    assert matched.n_jobs == -1 and "champion's budget" in why
    assert challenger_budget("full", champion, full, quick) == (
        full,
        "asked for the full budget: the settings' full budget",
    )
    assert challenger_budget("quick", champion, full, quick)[0] == quick
    assert challenger_budget("champion", None, full, quick)[0] == full  # an old version: not recorded


def test_a_versions_budget_is_read_from_its_tags_else_its_run() -> None:
    tags = {"galaxy.budget.name": "quick", "galaxy.budget.search": "random", "galaxy.budget.n_iter": "3",
            "galaxy.budget.cv_folds": "3"}  # fmt: skip
    assert recorded_budget(tags, {}) == Budget("quick", "random", 3, 3)
    old_run = {"search": "random", "n_iter": "30", "cv_folds": "10", "quick": "False"}
    assert recorded_budget({}, old_run) == Budget("full", "random", 30, 10)
    assert recorded_budget({}, {}) is None


def test_the_form_names_both_versions_metrics_and_the_override() -> None:
    worse = comparison()
    text = form_description(worse)
    for words in ("v3", "v5", "0.9541", "0.9358", "-0.0183", "quick", "override_reason", "worse"):
        assert words in text, words
    assert "worse" not in form_description(comparison(0.95, 0.96))
    schema = decision_form(worse).model_json_schema()
    for field in ("approve", "reviewer", "comment", "override_reason"):
        assert schema["properties"][field]["description"]
    assert schema["then"]["required"] == ["override_reason"]
    assert "then" not in decision_form(comparison(0.95, 0.96)).model_json_schema()


def test_approving_a_worse_challenger_without_a_reason_keeps_the_champion() -> None:
    worse, now = comparison(), datetime(2026, 1, 2, tzinfo=UTC)
    refused = decision_record(worse, now, 60, (True, "ada", "", "  "))
    assert (refused.outcome, refused.in_service_after) == ("rejected", "3")
    assert "override_reason" in refused.comment
    taken = decision_record(worse, now, 60, (True, "ada", "", "ellipticals matter more"))
    assert (taken.outcome, taken.in_service_after, taken.override_reason) == (
        "approved",
        "5",
        "ellipticals matter more",
    )
    assert decision_record(worse, now, 60, None).outcome == "timeout"


def test_how_to_decide_names_the_ui_only_when_there_is_one() -> None:
    with_ui = how_to_decide("abc", "http://127.0.0.1:4200")
    assert "http://127.0.0.1:4200/runs/flow-run/abc" in with_ui and "galaxy review decide abc" in with_ui
    temporary = how_to_decide("abc", None)
    assert "no UI" in temporary and "prefect server start" in temporary and "PREFECT_API_URL" in temporary
    assert "galaxy review decide abc" in temporary


# --------------------------------------------------------------------------- Prefect


def test_the_server_refuses_approving_a_worse_challenger_without_a_reason(prefect_harness: None) -> None:
    """The Resume form's rule is enforced by the Prefect server itself: the UI and decide see it."""
    from prefect import flow

    from galaxy_morphology.tasks.review import wait_for_decision

    @flow(name="galaxy-review")
    def paused() -> ReviewDecision | None:
        return wait_for_decision(decision_form(comparison()), 120)

    refusals: list[str] = []

    def decide() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = paused_run_ids()
            if runs:
                try:
                    submit_decision(runs[0], {"approve": True, "reviewer": "ada", "override_reason": " "})
                except ReviewDecisionError as error:
                    if "override_reason" not in str(error):
                        time.sleep(0.5)  # the form is not saved yet
                        continue
                    refusals.append(str(error))
                    submit_decision(
                        runs[0], {"approve": True, "reviewer": "ada", "override_reason": "recall"}
                    )
                    return
            time.sleep(0.5)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(decide,), daemon=True)
    thread.start()
    decision = paused()
    thread.join(timeout=5)
    assert refusals and "decision refused" in refusals[0]
    assert decision is not None and decision.approve and decision.override_reason == "recall"


def test_decide_names_what_it_cannot_decide(prefect_harness: None) -> None:
    from uuid import uuid4

    from typer.testing import CliRunner

    from galaxy_morphology.cli import app

    runner = CliRunner()
    missing = str(uuid4())
    result = runner.invoke(app, ["review", "decide", missing, "--approve", "--reviewer", "ada"])
    assert result.exit_code == 2 and f"flow run {missing} not found" in result.output
    result = runner.invoke(app, ["review", "decide", "nonsense", "--reject", "--reviewer", "ada"])
    assert result.exit_code == 2 and "not a flow run id" in result.output


# --------------------------------------------------------------------------- flow


def test_training_artifacts_link_to_mlflow_and_count_drops_apart_from_kept_rows(trained: Any) -> None:
    summary = trained.result()
    artifacts = run_artifacts(str(trained.state_details.flow_run_id))
    (markdown,) = artifacts["training-summary"]
    assert f"]({UI}/#/runs/{summary.run_id})" in markdown
    assert f"]({UI}/#/models/{MODEL}/versions/{summary.version})" in markdown
    assert f"/runs/{summary.run_id}/artifactPath/evaluation/confusion_matrix.png)" in markdown
    (drops,) = artifacts["cleaning-drops"]
    description, table = drops.split("\n", 1)
    assert "kept" in description and "kept" not in table
    assert json.loads(table)[-1] == {"reason": "total", "rows dropped": 0}


def test_young_champion_without_breach_is_not_reviewed(champion: str, store: Path, settings: str) -> None:
    before = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").search_model_versions(f"name = '{MODEL}'")
    summary = review_flow(settings_file=settings)
    after = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").search_model_versions(f"name = '{MODEL}'")
    assert summary.outcome == "not_due"
    assert summary.champion_after == champion_now(store)
    assert len(after) == len(before)


def run_artifacts(flow_run_id: str) -> dict[str, list[str]]:
    """The description and data (markdown, or a table's JSON) of each artifact of one flow run, by key."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=only)
    by_key: dict[str, list[str]] = {}
    for artifact in found:
        by_key.setdefault(str(artifact.key), []).append(f"{artifact.description}\n{artifact.data}")
    return by_key


def test_breach_triggers_review_and_approval_moves_champion(
    champion: str, store: Path, settings: str
) -> None:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("galaxy-morphology-monitoring")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            "galaxy-morphology-monitoring", artifact_location=(store / "artifacts").as_uri()
        )
    )
    breach = client.create_run(
        experiment_id,
        tags={"galaxy.monitoring.status": "breach", "galaxy.monitoring.breached": "f1_macro"},
    )
    client.set_terminated(breach.info.run_id)
    before = champion_now(store)

    thread = resume_when_paused({"approve": True, "reviewer": "ada", "comment": "better recall"})
    state = review_flow(settings_file=settings, return_state=True)  # the champion's budget
    thread.join(timeout=5)
    summary = state.result()

    assert summary.outcome == "approved"
    assert summary.champion_before == before
    assert "monitoring breach" in "; ".join(summary.reasons)
    assert summary.challenger != before
    assert champion_now(store) == summary.challenger == summary.champion_after
    assert LAST_REVIEW_TAG in client.get_registered_model(MODEL).tags

    # aliases and tags agree: the new champion is no challenger any more, the old one is replaced
    new, old = (client.get_model_version(MODEL, v) for v in (summary.challenger, before))
    assert new.aliases == ["champion"] and old.aliases == []
    assert new.tags["gate.decision"] == "champion" and "kept" not in new.tags["gate.reason"]
    assert "approved by ada" in new.tags["gate.reason"]
    assert new.tags["gate.registration_decision"] == "challenger"
    assert old.tags["gate.decision"] == "replaced"
    for version in (new, old):
        assert version.tags["galaxy.review.decision"] == "approved"
        assert version.tags["galaxy.review.reviewer"] == "ada"
        assert version.tags["galaxy.review.comment"] == "better recall"
        assert version.tags["galaxy.review.challenger_version"] == summary.challenger

    # the challenger was trained with the champion's (quick) budget, and the review says so
    assert new.tags["galaxy.budget.name"] == "quick" == old.tags["galaxy.budget.name"]
    assert new.tags["galaxy.budget.n_iter"] == old.tags["galaxy.budget.n_iter"]
    run = client.get_run(summary.review_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["galaxy.review.decision"] == "approved"
    assert run.data.tags["galaxy.review.reviewer"] == "ada"
    params = run.data.params
    assert params["challenger_budget"].startswith("quick") and params["champion_budget"].startswith("quick")
    assert params["challenger_budget_reason"] == "the champion's budget (like with like)"
    assert params["champion_data_digest"] == params["challenger_data_digest"] != "not recorded"
    assert params["champion_data.test"] == params["data.test"]
    for name in ("f1_macro", "roc_auc", "accuracy", "recall_elliptical"):
        assert f"champion_{name}" in run.data.metrics
        assert f"challenger_{name}" in run.data.metrics
        assert run.data.metrics[f"diff_{name}"] == pytest.approx(
            run.data.metrics[f"challenger_{name}"] - run.data.metrics[f"champion_{name}"]
        )
        # paired bootstrap: both versions on the same resampled test rows
        assert run.data.metrics[f"diff_{name}_ci_low"] <= run.data.metrics[f"diff_{name}_ci_high"]
    assert params["champion_version"] == before
    assert int(params["data.test"]) > 0
    assert "champion_registered_at" in params

    # the Prefect artifacts: the comparison rewritten with the decision, the decision itself,
    # and the data steps once
    artifacts = run_artifacts(str(state.state_details.flow_run_id))
    (comparison,) = artifacts["review-comparison"]
    assert "## Decision: approved by ada" in comparison and "waiting" not in comparison
    assert "Resume" not in comparison and "galaxy review decide" not in comparison
    assert "budget" in comparison and params["challenger_data_digest"] in comparison
    assert f"]({UI}/#/models/{MODEL}/versions/{summary.challenger})" in comparison
    assert f"]({UI}/#/runs/{params['challenger_training_run']})" in comparison
    (decision,) = artifacts["review-decision"]
    assert "approved" in decision and "ada" in decision and "better recall" in decision
    assert f"]({UI}/#/runs/{summary.review_run_id})" in decision
    assert len(artifacts["cleaning-drops"]) == 1

    # the breach is now older than the last review: nothing is due any more
    assert review_flow(settings_file=settings).outcome == "not_due"


def test_rejection_keeps_the_champion_and_records_the_reason(
    champion: str, store: Path, settings: str
) -> None:
    before = champion_now(store)
    thread = resume_when_paused({"approve": False, "reviewer": "grace", "comment": "worse on ellipticals"})
    summary = review_flow(force=True, budget="quick", settings_file=settings)
    thread.join(timeout=5)

    assert summary.outcome == "rejected"
    assert champion_now(store) == before == summary.champion_after
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(challenger.version) == summary.challenger
    assert challenger.tags["galaxy.review.decision"] == "rejected"
    assert challenger.tags["galaxy.review.comment"] == "worse on ellipticals"
    assert challenger.tags["galaxy.review.reviewer"] == "grace"
    assert challenger.aliases == ["challenger"]
    assert challenger.tags["gate.decision"] == "challenger"
    kept = client.get_model_version(MODEL, before)
    assert kept.aliases == ["champion"] and kept.tags["galaxy.review.decision"] == "rejected"


def test_no_answer_before_the_timeout_keeps_the_champion(champion: str, store: Path) -> None:
    before = champion_now(store)
    state = review_flow(
        force=True, budget="quick", settings_file=settings_file(store, timeout=2), return_state=True
    )
    assert state.is_completed(), state
    summary = state.result()
    assert summary.outcome == "timeout"
    assert champion_now(store) == before == summary.champion_after
    tags = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_model_version(MODEL, summary.challenger).tags
    assert tags["galaxy.review.decision"] == "timeout"
