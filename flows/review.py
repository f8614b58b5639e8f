"""Retraining review: is the champion due for review? Train a challenger, compare, let a human decide."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput

from flows.data import prepare_data
from flows.training import run_training
from galaxy.settings import load_settings
from tasks.review import (
    APPROVED,
    REJECTED,
    TIMED_OUT,
    apply_decision,
    comparison_markdown,
    due_reasons,
    log_review_run,
    read_review_state,
    score_version,
)

DECISION_KEY = "review-decision"
NO_ANSWER = "(no answer: decision timeout)"


class ReviewDecision(RunInput):
    """The maintainer's answer, entered in the Prefect UI when resuming the paused run."""

    approve: bool = False
    reviewer: str
    comment: str = ""


@dataclass(frozen=True)
class ReviewSummary:
    outcome: str  # not_due | no_champion | approved | rejected | timeout
    reasons: list[str] = field(default_factory=list)
    champion_before: str | None = None
    challenger: str | None = None
    champion_after: str | None = None
    review_run_id: str | None = None
    reviewer: str = ""
    comment: str = ""
    champion_metrics: dict[str, float] = field(default_factory=dict)
    challenger_metrics: dict[str, float] = field(default_factory=dict)


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


@flow(name="galaxy-review")
def review_flow(
    force: bool = False,
    source: Literal["snapshot", "skyserver"] | None = None,
    snapshot: str | None = None,
    quick: bool = False,
    settings_file: str | None = None,
) -> ReviewSummary:
    """Review the champion when it is old or monitoring breached (or when forced); a human decides."""
    log = get_run_logger()
    settings = load_settings(
        {"data": {"source": source, "snapshot_path": snapshot}},
        Path(settings_file) if settings_file else None,
    )
    uri = settings.tracking_uri()
    name = settings.mlflow.model_name
    now = datetime.now(UTC)
    state = read_review_state(uri, name, settings.mlflow.monitoring_experiment)
    if state.champion is None:
        message = f"No `champion` alias on {name}: run the training flow first; nothing to review."
        log.warning(message)
        create_markdown_artifact(key="review-status", markdown=f"# Review\n\n{message}")
        return ReviewSummary(outcome="no_champion")
    reasons = due_reasons(state, now, settings.review.max_age_days, force)
    champion = state.champion
    if not reasons:
        age = (now - champion.registered_at).days
        message = (
            f"Champion v{champion.version} is {age} days old (review after "
            f"{settings.review.max_age_days}) and monitoring reported no breach since "
            f"{(state.last_review or champion.registered_at):%Y-%m-%d}: no review due."
        )
        log.info(message)
        create_markdown_artifact(key="review-status", markdown=f"# Review not due\n\n{message}")
        return ReviewSummary(
            outcome="not_due", champion_before=champion.version, champion_after=champion.version
        )
    log.info("review due: %s", "; ".join(reasons))

    trained = run_training(settings, quick, promote=False)
    # the same data and seed give the same split: both models are scored on the same test rows
    prepared = prepare_data(settings)
    test = prepared.split.test
    champion_metrics = score_version(uri, name, champion.version, test)
    challenger_metrics = score_version(uri, name, trained.version, test)
    markdown = comparison_markdown(
        name,
        champion,
        trained.version,
        champion_metrics,
        challenger_metrics,
        prepared.counts,
        prepared.source,
        reasons,
        now,
    )
    run_id = log_review_run(
        uri,
        settings.mlflow.review_experiment,
        settings.mlflow.artifact_root,
        name,
        champion,
        trained.version,
        trained.run_id,
        champion_metrics,
        challenger_metrics,
        prepared.counts,
        prepared.source,
        reasons,
        markdown,
    )
    create_markdown_artifact(
        key="review-comparison", markdown=markdown, description="Champion vs challenger, same test split"
    )

    timeout = settings.review.decision_timeout_seconds
    log.info("waiting up to %d s for a maintainer's decision (resume this run in the UI)", timeout)
    decision = wait_for_decision(timeout)
    if decision is None:
        outcome, reviewer, comment = TIMED_OUT, "", f"no decision within {timeout} s: champion kept"
    else:
        outcome = APPROVED if decision.approve else REJECTED
        reviewer, comment = decision.reviewer, decision.comment
    after = apply_decision(uri, name, trained.version, run_id, outcome, reviewer, comment, datetime.now(UTC))
    log.info(
        "review %s by %s: champion v%s (challenger v%s) %s",
        outcome,
        reviewer or "nobody",
        after,
        trained.version,
        comment,
    )
    return ReviewSummary(
        outcome=outcome,
        reasons=reasons,
        champion_before=champion.version,
        challenger=trained.version,
        champion_after=after,
        review_run_id=run_id,
        reviewer=reviewer,
        comment=comment,
        champion_metrics=champion_metrics,
        challenger_metrics=challenger_metrics,
    )
