"""Retraining review edges: champion age, monitoring breaches, side-by-side scores, the decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import RunStatus
from prefect import task
from prefect.cache_policies import NO_CACHE

from galaxy.gate import CHAMPION
from galaxy.metrics import classification_metrics
from galaxy.prepare import LABEL
from galaxy.schema import FEATURE_COLUMNS
from galaxy.summary import markdown_table
from tasks.tracking import champion_version, client, ensure_experiment

LAST_REVIEW_TAG = "galaxy.review.last_at"
APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timeout"


@dataclass(frozen=True)
class ChampionInfo:
    version: str
    registered_at: datetime
    run_id: str | None


@dataclass(frozen=True)
class Breach:
    run_id: str
    at: datetime
    metrics: str


@dataclass(frozen=True)
class ReviewState:
    """What the review reads before deciding whether it is due."""

    champion: ChampionInfo | None
    last_review: datetime | None
    breaches: list[Breach]


def from_millis(value: int | float) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def is_breach(tags: Mapping[str, str]) -> bool:
    """A monitoring run that breached: ``galaxy.monitoring.status = breach`` (or ``galaxy.breach = true``)."""
    return tags.get("galaxy.monitoring.status") == "breach" or tags.get("galaxy.breach") == "true"


@task(name="read-review-state", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def read_review_state(tracking_uri: str, model_name: str, monitoring_experiment: str) -> ReviewState:
    """The champion (and its registration time), the last review, and monitoring breaches since."""
    tracking = client(tracking_uri)
    version = champion_version(tracking, model_name, CHAMPION)
    if version is None:
        return ReviewState(None, None, [])
    registered = tracking.get_model_version(model_name, version)
    champion = ChampionInfo(version, from_millis(registered.creation_timestamp), registered.run_id)
    stamp = tracking.get_registered_model(model_name).tags.get(LAST_REVIEW_TAG)
    last_review = datetime.fromisoformat(stamp) if stamp else None
    since = max(champion.registered_at, last_review) if last_review else champion.registered_at
    experiment = tracking.get_experiment_by_name(monitoring_experiment)
    breaches: list[Breach] = []
    if experiment is not None:
        runs = tracking.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.start_time >= {int(since.timestamp() * 1000)}",
            max_results=1000,
        )
        breaches = [
            Breach(
                run.info.run_id,
                from_millis(run.info.start_time),
                run.data.tags.get("galaxy.monitoring.breached", ""),
            )
            for run in runs
            if is_breach(run.data.tags)
        ]
    return ReviewState(champion, last_review, breaches)


def due_reasons(state: ReviewState, now: datetime, max_age_days: int, force: bool) -> list[str]:
    """Why a review is due (empty: not due). Pure."""
    reasons = ["forced by the caller"] if force else []
    if state.champion is None:
        return reasons
    age = (now - state.champion.registered_at).total_seconds() / 86400
    if age > max_age_days:
        reasons.append(f"champion v{state.champion.version} is {age:.0f} days old (more than {max_age_days})")
    if state.breaches:
        since = state.last_review or state.champion.registered_at
        reasons.append(
            f"{len(state.breaches)} monitoring breach(es) since {since:%Y-%m-%d %H:%M} UTC "
            f"(MLflow runs {', '.join(b.run_id[:8] for b in state.breaches)})"
        )
    return reasons


@task(name="score-version", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def score_version(tracking_uri: str, model_name: str, version: str, test: pd.DataFrame) -> dict[str, float]:
    """Every classification metric of one registered version on the given labelled rows."""
    client(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    predicted = model.predict(test[list(FEATURE_COLUMNS)])
    return classification_metrics(test[LABEL].to_numpy(), predicted["p_elliptical"].to_numpy())


def differences(champion: Mapping[str, float], challenger: Mapping[str, float]) -> dict[str, float]:
    """Challenger minus champion, metric by metric."""
    return {key: challenger[key] - champion[key] for key in champion if key in challenger}


@task(name="log-review-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_review_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Any,
    model_name: str,
    champion: ChampionInfo,
    challenger_version: str,
    challenger_run_id: str,
    champion_metrics: dict[str, float],
    challenger_metrics: dict[str, float],
    counts: dict[str, int],
    source: str,
    reasons: list[str],
    markdown: str,
) -> str:
    """One run per review: both models' metrics, their differences, data sizes and dates."""
    tracking = client(tracking_uri)
    experiment_id = ensure_experiment(tracking, experiment, artifact_root)
    now = datetime.now(UTC)
    run = tracking.create_run(
        experiment_id,
        run_name=f"review-v{champion.version}-vs-v{challenger_version}",
        tags={
            "galaxy.flow": "review",
            "galaxy.review.reasons": "; ".join(reasons),
            "galaxy.review.decision": "pending",
            "galaxy.data.source": source,
        },
    )
    run_id = run.info.run_id
    params: dict[str, Any] = {
        "model_name": model_name,
        "champion_version": champion.version,
        "champion_registered_at": champion.registered_at.isoformat(),
        "challenger_version": challenger_version,
        "challenger_training_run": challenger_run_id,
        "reviewed_at": now.isoformat(),
        **{f"data.{key}": value for key, value in counts.items()},
    }
    for key, value in params.items():
        tracking.log_param(run_id, key, value)
    stamp = int(now.timestamp() * 1000)
    metrics = [
        *(mlflow.entities.Metric(f"champion_{k}", v, stamp, 0) for k, v in champion_metrics.items()),
        *(mlflow.entities.Metric(f"challenger_{k}", v, stamp, 0) for k, v in challenger_metrics.items()),
        *(
            mlflow.entities.Metric(f"diff_{k}", v, stamp, 0)
            for k, v in differences(champion_metrics, challenger_metrics).items()
        ),
    ]
    tracking.log_batch(run_id, metrics=metrics)
    tracking.log_text(run_id, markdown, "review/comparison.md")
    return run_id


def comparison_markdown(
    model_name: str,
    champion: ChampionInfo,
    challenger_version: str,
    champion_metrics: Mapping[str, float],
    challenger_metrics: Mapping[str, float],
    counts: Mapping[str, int],
    source: str,
    reasons: list[str],
    now: datetime,
) -> str:
    diff = differences(champion_metrics, challenger_metrics)
    rows = [
        (key, champion_metrics[key], challenger_metrics[key], f"{diff[key]:+.4f}")
        for key in champion_metrics
        if key in diff and not key.startswith("support")
    ]
    return "\n\n".join(
        [
            f"# Retraining review of {model_name}: champion v{champion.version} vs challenger "
            f"v{challenger_version}",
            "Why: " + "; ".join(reasons),
            f"Champion registered {champion.registered_at:%Y-%m-%d %H:%M} UTC; "
            f"review {now:%Y-%m-%d %H:%M} UTC.",
            f"Data: `{source}`; rows: " + ", ".join(f"{key} {value}" for key, value in counts.items()),
            "## Both models on the same test split",
            markdown_table(["metric", f"champion v{champion.version}", "challenger", "difference"], rows),
            "## Decision",
            "The review never promotes on its own. Resume this flow run in the Prefect UI and fill "
            "the form: **approve** moves `champion` to the challenger; leaving it unchecked keeps "
            "the champion. No answer before the timeout keeps the champion.",
        ]
    )


def apply_decision(
    tracking_uri: str,
    model_name: str,
    challenger_version: str,
    review_run_id: str,
    outcome: str,
    reviewer: str,
    comment: str,
    now: datetime,
) -> str:
    """Record the decision; move ``champion`` only on approval. Returns the champion's version after.

    A plain function, not a task: after a pause times out the flow run is no longer running
    and Prefect would refuse to start tasks in it.
    """
    tracking = client(tracking_uri)
    tags = {
        "galaxy.review.decision": outcome,
        "galaxy.review.reviewer": reviewer,
        "galaxy.review.comment": comment,
        "galaxy.review.run_id": review_run_id,
        "galaxy.review.decided_at": now.isoformat(),
    }
    for key, value in tags.items():
        tracking.set_model_version_tag(model_name, challenger_version, key, value)
    for key in ("galaxy.review.decision", "galaxy.review.reviewer", "galaxy.review.comment"):
        tracking.set_tag(review_run_id, key, tags[key])
    tracking.set_terminated(review_run_id, RunStatus.to_string(RunStatus.FINISHED))
    if outcome == APPROVED:
        tracking.set_registered_model_alias(model_name, CHAMPION, challenger_version)
    tracking.set_registered_model_tag(model_name, LAST_REVIEW_TAG, now.isoformat())
    return str(champion_version(tracking, model_name, CHAMPION))
