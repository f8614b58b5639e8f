"""Retraining review tasks: the champion's age and breaches, the review run, the decision."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput

from galaxy_morphology.core.gate import CHALLENGER
from galaxy_morphology.core.metrics import classification_metrics, paired_bootstrap
from galaxy_morphology.core.prepare import LABEL, PreparedData
from galaxy_morphology.core.review import (
    APPROVED,
    Breach,
    ChampionInfo,
    Comparison,
    ReviewState,
    comparison_markdown,
    is_breach,
)
from galaxy_morphology.io.registry import Registry

LAST_REVIEW_TAG = "galaxy.review.last_at"
DECISION_KEY = "review-decision"
NO_ANSWER = "(no answer: decision timeout)"


class ReviewDecision(RunInput):
    """The maintainer's answer, entered in the Prefect UI when resuming the paused run."""

    approve: bool = False
    reviewer: str
    comment: str = ""


def from_millis(value: int | float) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


@task(name="read-review-state", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def read_review_state(registry: Registry, monitoring_experiment: str) -> ReviewState:
    """The model in service (and its registration time), the last review, and breaches since."""
    resolved = registry.in_service()
    if resolved is None or resolved.version is None or resolved.registered_at is None:
        return ReviewState(None, None, [])
    champion = ChampionInfo(resolved.version, resolved.registered_at, resolved.run_id)
    stamp = registry.model_tag(LAST_REVIEW_TAG)
    last_review = datetime.fromisoformat(stamp) if stamp else None
    since = max(champion.registered_at, last_review) if last_review else champion.registered_at
    client = registry.client
    experiment = client.get_experiment_by_name(monitoring_experiment)
    breaches: list[Breach] = []
    if experiment is not None:
        runs = client.search_runs(
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


@task(name="compare-versions", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def compare(
    registry: Registry,
    champion: ChampionInfo,
    challenger_version: str,
    challenger_run_id: str,
    prepared: PreparedData,
    reasons: list[str],
) -> Comparison:
    """Both versions scored on the same test rows (the same data and seed give the same split)."""
    test = prepared.split.test
    y = test[LABEL].to_numpy()
    champion_p, challenger_p = (
        registry.score(registry.resolve(f"models:/{registry.name}/{version}"), test)[
            "p_elliptical"
        ].to_numpy()
        for version in (champion.version, challenger_version)
    )
    ours, theirs = classification_metrics(y, champion_p), classification_metrics(y, challenger_p)
    return Comparison(
        model_name=registry.name,
        champion=champion,
        challenger_version=challenger_version,
        challenger_run_id=challenger_run_id,
        champion_metrics=ours,
        challenger_metrics=theirs,
        counts=prepared.counts,
        source=prepared.source,
        reasons=reasons,
        at=datetime.now(UTC),
        intervals=paired_bootstrap(y, challenger_p, champion_p),
    )


@task(name="log-review-run", cache_policy=NO_CACHE)
def log_review_run(registry: Registry, experiment: str, comparison: Comparison) -> str:
    """One run per review (left open until the decision): both models' metrics and differences."""
    c, tracking = comparison, registry.tracking
    run_id = tracking.start_run(
        experiment,
        f"review-v{c.champion.version}-vs-v{c.challenger_version}",
        {
            "galaxy.flow": "review",
            "galaxy.review.reasons": "; ".join(c.reasons),
            "galaxy.review.decision": "pending",
            "galaxy.data.source": c.source,
        },
    )
    tracking.log_params(
        run_id,
        {
            "model_name": c.model_name,
            "champion_version": c.champion.version,
            "champion_registered_at": c.champion.registered_at.isoformat(),
            "challenger_version": c.challenger_version,
            "challenger_training_run": c.challenger_run_id,
            "reviewed_at": c.at.isoformat(),
            **{f"data.{key}": value for key, value in c.counts.items()},
        },
    )
    tracking.log_metrics(
        run_id,
        {
            **{f"champion_{k}": v for k, v in c.champion_metrics.items()},
            **{f"challenger_{k}": v for k, v in c.challenger_metrics.items()},
            **{f"diff_{k}": v for k, v in c.differences.items()},
            **{f"diff_{k}_ci_low": v.low for k, v in c.intervals.items()},
            **{f"diff_{k}_ci_high": v.high for k, v in c.intervals.items()},
        },
    )
    tracking.log_text(run_id, comparison_markdown(c), "review/comparison.md")
    return run_id


def apply_decision(
    registry: Registry,
    challenger_version: str,
    review_run_id: str,
    outcome: str,
    reviewer: str,
    comment: str,
    now: datetime,
) -> str:
    """Record the decision; move the in-service alias only on approval. Returns its version after.

    A plain function, not a task: after a pause times out the flow run is no longer running
    and Prefect would refuse to start tasks in it.
    """
    tags = {
        "galaxy.review.decision": outcome,
        "galaxy.review.reviewer": reviewer,
        "galaxy.review.comment": comment,
        "galaxy.review.run_id": review_run_id,
        "galaxy.review.decided_at": now.isoformat(),
    }
    registry.tag_version(challenger_version, tags)
    tracking = registry.tracking
    tracking.set_tags(review_run_id, {key: tags[key] for key in list(tags)[:3]})
    tracking.end_run(review_run_id)
    if outcome == APPROVED:
        registry.set_alias(registry.alias, challenger_version)
        if registry.version_for(CHALLENGER) == challenger_version:
            registry.client.delete_registered_model_alias(registry.name, CHALLENGER)
    registry.set_model_tag(LAST_REVIEW_TAG, now.isoformat())
    return str(registry.version_for(registry.alias))


def wait_for_decision(timeout_seconds: int) -> ReviewDecision | None:
    """Pause this flow run until a maintainer resumes it with a decision; None on timeout.

    Prefect fails a run whose pause expires, so the review does not let it expire: when the
    decision timeout passes, a timer resumes the run itself with a "no answer" input (unless a
    maintainer answered first) and the run completes, keeping the champion. The pause's own
    timeout is only a safety net a few polls later.
    """
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    flow_run_id = context.flow_run.id
    poll = max(1, min(10, timeout_seconds // 30))
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        # a maintainer may have answered first, or the run is not paused (any more)
        with contextlib.suppress(Exception):
            resume_flow_run(flow_run_id, run_input={"approve": False, "reviewer": NO_ANSWER, "comment": ""})

    timer = threading.Timer(timeout_seconds, contextvars.copy_context().run, args=(expire,))
    timer.daemon = True
    timer.start()
    try:
        decision = pause_flow_run(
            wait_for_input=ReviewDecision,
            timeout=timeout_seconds + 3 * poll + 5,
            poll_interval=poll,
            key=DECISION_KEY,
        )
    except FlowPauseTimeout:
        return None
    finally:
        timer.cancel()
    if expired.is_set() and decision.reviewer == NO_ANSWER:
        return None
    return decision
