"""The retraining review end to end: real Prefect (test harness), real MLflow on a temporary SQLite store.

The maintainer's decision is supplied the way the Prefect UI does it: a background thread waits
for the review's flow run to be paused, then resumes it with a run input.
"""

from __future__ import annotations

import contextvars
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

from galaxy_morphology.core.review import Breach, ChampionInfo, ReviewState, due_reasons, is_breach
from galaxy_morphology.flows.review import review_flow
from galaxy_morphology.flows.training import training_flow
from galaxy_morphology.tasks.review import LAST_REVIEW_TAG
from tests.factories import raw_frame, write_snapshot

MODEL = "galaxy-morphology"


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
def champion(prefect_harness: None, store: Path, settings: str) -> str:
    return training_flow(quick=True, settings_file=settings).version


def champion_now(store: Path) -> str:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def resume_when_paused(answer: dict[str, Any], limit: float = 300) -> threading.Thread:
    """Resume the first paused flow run with ``answer`` as its input (from another thread)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))

    def resume() -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                try:
                    resume_flow_run(runs[0].id, run_input=answer)
                    return
                except Exception:  # the input form may not be saved yet: try again
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


# --------------------------------------------------------------------------- flow


def test_young_champion_without_breach_is_not_reviewed(champion: str, store: Path, settings: str) -> None:
    before = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").search_model_versions(f"name = '{MODEL}'")
    summary = review_flow(settings_file=settings)
    after = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").search_model_versions(f"name = '{MODEL}'")
    assert summary.outcome == "not_due"
    assert summary.champion_after == champion_now(store)
    assert len(after) == len(before)


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
    summary = review_flow(settings_file=settings, quick=True)
    thread.join(timeout=5)

    assert summary.outcome == "approved"
    assert summary.champion_before == before
    assert "monitoring breach" in "; ".join(summary.reasons)
    assert summary.challenger != before
    assert champion_now(store) == summary.challenger == summary.champion_after
    tags = client.get_model_version(MODEL, summary.challenger).tags
    assert tags["galaxy.review.decision"] == "approved"
    assert tags["galaxy.review.reviewer"] == "ada"
    assert tags["galaxy.review.comment"] == "better recall"
    assert LAST_REVIEW_TAG in client.get_registered_model(MODEL).tags

    run = client.get_run(summary.review_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["galaxy.review.decision"] == "approved"
    for name in ("f1_macro", "roc_auc", "accuracy", "recall_elliptical"):
        assert f"champion_{name}" in run.data.metrics
        assert f"challenger_{name}" in run.data.metrics
        assert run.data.metrics[f"diff_{name}"] == pytest.approx(
            run.data.metrics[f"challenger_{name}"] - run.data.metrics[f"champion_{name}"]
        )
        # paired bootstrap: both versions on the same resampled test rows
        assert run.data.metrics[f"diff_{name}_ci_low"] <= run.data.metrics[f"diff_{name}_ci_high"]
    assert run.data.params["champion_version"] == before
    assert int(run.data.params["data.test"]) > 0
    assert "champion_registered_at" in run.data.params

    # the breach is now older than the last review: nothing is due any more
    assert review_flow(settings_file=settings).outcome == "not_due"


def test_rejection_keeps_the_champion_and_records_the_reason(
    champion: str, store: Path, settings: str
) -> None:
    before = champion_now(store)
    thread = resume_when_paused({"approve": False, "reviewer": "grace", "comment": "worse on ellipticals"})
    summary = review_flow(force=True, quick=True, settings_file=settings)
    thread.join(timeout=5)

    assert summary.outcome == "rejected"
    assert champion_now(store) == before == summary.champion_after
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(challenger.version) == summary.challenger
    assert challenger.tags["galaxy.review.decision"] == "rejected"
    assert challenger.tags["galaxy.review.comment"] == "worse on ellipticals"
    assert challenger.tags["galaxy.review.reviewer"] == "grace"


def test_no_answer_before_the_timeout_keeps_the_champion(champion: str, store: Path) -> None:
    before = champion_now(store)
    state = review_flow(
        force=True, quick=True, settings_file=settings_file(store, timeout=2), return_state=True
    )
    assert state.is_completed(), state
    summary = state.result()
    assert summary.outcome == "timeout"
    assert champion_now(store) == before == summary.champion_after
    tags = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_model_version(MODEL, summary.challenger).tags
    assert tags["galaxy.review.decision"] == "timeout"
