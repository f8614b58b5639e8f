"""Retraining review: is the champion due for review? Train a challenger, compare, let a human decide."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from galaxy_morphology.core.links import links_for
from galaxy_morphology.core.review import (
    BudgetChoice,
    ChampionInfo,
    Comparison,
    DecisionRecord,
    ReviewState,
    challenger_budget,
    comparison_markdown,
    decided_section,
    decision_markdown,
    decision_record,
    due_reasons,
    how_to_decide,
    not_due_message,
    pending_section,
)
from galaxy_morphology.core.settings import Settings, load_settings
from galaxy_morphology.flows.data import Source, data_overrides, prepare_data, settings_path
from galaxy_morphology.flows.training import search_budget, train_on
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry
from galaxy_morphology.tasks.review import (
    ReviewDecision,
    compare,
    current_flow_run_id,
    decision_form,
    decision_ui_url,
    log_review_run,
    publish_comparison,
    publish_decision,
    read_review_state,
    record_decision,
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
    override_reason: str = ""
    challenger_budget: str = ""
    headline: str = ""


def skip_review(state: ReviewState, registry: Registry, max_age_days: int, now: datetime) -> ReviewSummary:
    """No champion, or no reason to review: say so in the UI and the log."""
    title, message = not_due_message(state, registry.name, registry.alias, max_age_days, now)
    run_logger().info(message)
    create_markdown_artifact(key="review-status", markdown=f"# {title}\n\n{message}")
    if state.champion is None:
        return ReviewSummary(outcome="no_champion")
    version = state.champion.version
    return ReviewSummary(outcome="not_due", champion_before=version, champion_after=version)


def challenger_for(
    settings: Settings, registry: Registry, champion: ChampionInfo, reasons: list[str], choice: BudgetChoice
) -> Comparison:
    """Train a challenger on today's data (the champion's budget unless asked otherwise) and
    score both on the same test rows."""
    prepared = prepare_data(settings)
    full, quick = search_budget(settings, quick=False), search_budget(settings, quick=True)
    budget = challenger_budget(choice, champion.budget, full, quick)
    run_logger().info("challenger budget: %s (%s)", budget[0].describe(), budget[1])
    trained = train_on(settings, prepared, budget[0], promote=False)
    links = links_for(settings)
    return compare(registry, champion, (trained.version, trained.run_id), prepared, budget, reasons, links)


def answer_of(decision: ReviewDecision | None) -> tuple[bool, str, str, str] | None:
    if decision is None:
        return None
    return decision.approve, decision.reviewer, decision.comment, decision.override_reason


def decide(settings: Settings, registry: Registry, comparison: Comparison) -> tuple[DecisionRecord, str]:
    """Publish the comparison, wait for a maintainer, record the decision everywhere."""
    timeout, links = settings.review.decision_timeout_seconds, links_for(settings)
    instructions = how_to_decide(current_flow_run_id(), decision_ui_url())
    pending = comparison_markdown(comparison, pending_section(comparison, instructions, timeout))
    run_id = log_review_run(registry, settings.mlflow.review_experiment, comparison, pending)
    artifact = publish_comparison(pending)
    run_logger().info("waiting up to %d s for a maintainer's decision. %s", timeout, instructions)
    answer = answer_of(wait_for_decision(decision_form(comparison), timeout))
    record = decision_record(comparison, datetime.now(UTC), timeout, answer)
    final = comparison_markdown(comparison, decided_section(comparison, record))
    record_decision(registry, comparison, record, run_id, final)
    publish_decision(artifact, final, decision_markdown(comparison, record, links.run(run_id)))
    return record, run_id


def run_review(
    settings: Settings, registry: Registry, champion: ChampionInfo, reasons: list[str], choice: BudgetChoice
) -> ReviewSummary:
    comparison = challenger_for(settings, registry, champion, reasons, choice)
    record, run_id = decide(settings, registry, comparison)
    run_logger().info(
        "review %s by %s: v%s in service (challenger v%s)",
        record.outcome,
        record.reviewer or "nobody",
        record.in_service_after,
        comparison.challenger_version,
    )
    return ReviewSummary(
        record.outcome,
        reasons,
        champion.version,
        comparison.challenger_version,
        record.in_service_after,
        run_id,
        record.reviewer,
        record.comment,
        dict(comparison.champion_metrics),
        dict(comparison.challenger_metrics),
        record.override_reason,
        comparison.challenger_budget.describe(),
        comparison.headline(),
    )


@flow(name="galaxy-review")
def review_flow(
    force: bool = False,
    source: Source = "settings",
    snapshot: str = "",
    budget: BudgetChoice = "champion",
    settings_file: str = "",
) -> ReviewSummary:
    """Review the champion when it is old or monitoring breached (or when forced); a human decides.

    Prefect's Quick run checks whether a review is due and runs it only then.

    Args:
        force: Review now, even when the champion is young and monitoring reported no breach.
        source: Where today's rows come from: `settings` (data.source in settings.yaml), the
            `snapshot` file, or SDSS `skyserver`.
        snapshot: Snapshot file (CSV, CSV.gz or Parquet) for source snapshot; empty: data.snapshot_path.
        budget: The challenger's search budget: `champion` (the champion's own, like with like),
            `full` (training.n_iter x training.cv_folds) or `quick` (a demo budget).
        settings_file: Settings YAML; empty: settings.yaml in the worker's folder (or $GALAXY_SETTINGS_FILE).
    """
    settings = load_settings(data_overrides(source, snapshot), settings_path(settings_file))
    registry, now = Registry.from_settings(settings), datetime.now(UTC)
    state = read_review_state(registry, settings.mlflow.monitoring_experiment)
    reasons = due_reasons(state, now, settings.review.max_age_days, force)
    if state.champion is None or not reasons:
        return skip_review(state, registry, settings.review.max_age_days, now)
    run_logger().info("review due: %s", "; ".join(reasons))
    return run_review(settings, registry, state.champion, reasons, budget)
