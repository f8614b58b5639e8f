"""Retraining review: is the champion due for review? Train a challenger, compare, let a human decide."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from galaxy_morphology.core.review import (
    APPROVED,
    REJECTED,
    TIMED_OUT,
    ChampionInfo,
    ReviewState,
    comparison_markdown,
    due_reasons,
    not_due_message,
)
from galaxy_morphology.core.settings import Settings, load_settings
from galaxy_morphology.flows.data import prepare_data
from galaxy_morphology.flows.training import train_on
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry
from galaxy_morphology.tasks.review import (
    apply_decision,
    compare,
    log_review_run,
    read_review_state,
    wait_for_decision,
)


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


def skip_review(state: ReviewState, registry: Registry, max_age_days: int, now: datetime) -> ReviewSummary:
    """No champion, or no reason to review: say so in the UI and the log."""
    title, message = not_due_message(state, registry.name, registry.alias, max_age_days, now)
    run_logger().info(message)
    create_markdown_artifact(key="review-status", markdown=f"# {title}\n\n{message}")
    if state.champion is None:
        return ReviewSummary(outcome="no_champion")
    version = state.champion.version
    return ReviewSummary(outcome="not_due", champion_before=version, champion_after=version)


def run_review(
    settings: Settings, registry: Registry, champion: ChampionInfo, reasons: list[str], quick: bool
) -> ReviewSummary:
    """Train a challenger on today's data, score both on the same test rows, wait for a human."""
    prepared = prepare_data(settings)
    trained = train_on(settings, prepared, quick, promote=False)
    comparison = compare(registry, champion, trained.version, trained.run_id, prepared, reasons)
    run_id = log_review_run(registry, settings.mlflow.review_experiment, comparison)
    markdown = comparison_markdown(comparison)
    create_markdown_artifact(key="review-comparison", markdown=markdown, description="Champion vs challenger")
    timeout = settings.review.decision_timeout_seconds
    run_logger().info("waiting up to %d s for a maintainer's decision (resume this run in the UI)", timeout)
    decision = wait_for_decision(timeout)
    if decision is None:
        outcome, reviewer, comment = TIMED_OUT, "", f"no decision within {timeout} s: champion kept"
    else:
        outcome = APPROVED if decision.approve else REJECTED
        reviewer, comment = decision.reviewer, decision.comment
    after = apply_decision(registry, trained.version, run_id, outcome, reviewer, comment, datetime.now(UTC))
    run_logger().info(
        "review %s by %s: v%s in service (challenger v%s)",
        outcome,
        reviewer or "nobody",
        after,
        trained.version,
    )
    return ReviewSummary(
        outcome,
        reasons,
        champion.version,
        trained.version,
        after,
        run_id,
        reviewer,
        comment,
        dict(comparison.champion_metrics),
        dict(comparison.challenger_metrics),
    )


@flow(name="galaxy-review")
def review_flow(
    force: bool = False,
    source: Literal["snapshot", "skyserver"] | None = None,
    snapshot: str | None = None,
    quick: bool = False,
    settings_file: str | None = None,
) -> ReviewSummary:
    """Review the champion when it is old or monitoring breached (or when forced); a human decides."""
    settings = load_settings(
        {"data": {"source": source, "snapshot_path": snapshot}},
        Path(settings_file) if settings_file else None,
    )
    registry, now = Registry.from_settings(settings), datetime.now(UTC)
    state = read_review_state(registry, settings.mlflow.monitoring_experiment)
    reasons = due_reasons(state, now, settings.review.max_age_days, force)
    if state.champion is None or not reasons:
        return skip_review(state, registry, settings.review.max_age_days, now)
    run_logger().info("review due: %s", "; ".join(reasons))
    return run_review(settings, registry, state.champion, reasons, quick)
