"""Retraining review tasks: the champion's age and breaches, the review run, the decision."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import get_client, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.settings import get_current_settings
from pydantic import ConfigDict, Field

from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.gate import CHALLENGER
from galaxy_morphology.core.links import MlflowLinks
from galaxy_morphology.core.metrics import classification_metrics, paired_bootstrap
from galaxy_morphology.core.prepare import LABEL, PreparedData
from galaxy_morphology.core.review import (
    APPROVED,
    GATE_METRIC,
    SIZE_KEYS,
    Breach,
    ChampionInfo,
    Comparison,
    DecisionRecord,
    ReviewState,
    decision_tags,
    form_description,
    is_breach,
    recorded_budget,
)
from galaxy_morphology.core.training import SearchBudget
from galaxy_morphology.io.registry import Registry

LAST_REVIEW_TAG = "galaxy.review.last_at"
DECISION_KEY = "review-decision"
NO_ANSWER = "(no answer: decision timeout)"
REVIEW_FLOW = "galaxy-review"


class ReviewDecisionError(UserError, RuntimeError):
    """A decision that cannot be given: no paused review with that id, or an answer it refuses."""


class ReviewDecision(RunInput):
    """The maintainer's answer, given in the Prefect UI's Resume form or by `galaxy review decide`."""

    approve: bool = Field(
        False,
        description="On: the challenger becomes the model in service (the in-service alias moves to it). "
        "Off: reject it; the champion stays in service.",
    )
    reviewer: str = Field(
        min_length=1, description="Who decides: recorded on the review run and on both model versions."
    )
    comment: str = Field(
        "", description="Why: recorded with the decision on the review run and both versions."
    )
    override_reason: str = Field(
        "",
        description=f"Needed only to approve a challenger that is worse than the champion on the gate "
        f"metric ({GATE_METRIC}; the description above says whether it is): why approve it anyway.",
    )


# approving (approve true) needs a non-blank override_reason: enforced by the Prefect server,
# which validates a resume's input against this schema (the UI shows its refusal)
OVERRIDE_RULE: dict[str, Any] = {
    "if": {"properties": {"approve": {"const": True}}, "required": ["approve"]},
    "then": {"required": ["override_reason"], "properties": {"override_reason": {"pattern": "\\S"}}},
}


class WorseChallengerDecision(ReviewDecision):
    """The answer form for a challenger worse on the gate metric: approval needs an override reason."""

    model_config = ConfigDict(json_schema_extra=OVERRIDE_RULE)


def decision_form(comparison: Comparison) -> type[ReviewDecision]:
    """The Resume form for this review: its description names both versions and their metrics."""
    base = WorseChallengerDecision if comparison.worse_on_gate else ReviewDecision
    return base.with_initial_data(description=form_description(comparison))


def from_millis(value: int | float) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def champion_info(
    registry: Registry, version: str, registered_at: datetime, run_id: str | None
) -> ChampionInfo:
    """The champion with what it was trained with: budget, data digest and sizes (when recorded)."""
    tags = dict(registry.client.get_model_version(registry.name, version).tags)
    params: dict[str, str] = {}
    if run_id:
        with contextlib.suppress(Exception):  # a deleted run: the version's tags still tell
            params = dict(registry.client.get_run(run_id).data.params)
    sizes = {key: params[f"data.{key}"] for key in SIZE_KEYS if f"data.{key}" in params}
    digest = tags.get("galaxy.data.digest")
    return ChampionInfo(version, registered_at, run_id, recorded_budget(tags, params), digest, sizes)


@task(name="read-review-state", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def read_review_state(registry: Registry, monitoring_experiment: str) -> ReviewState:
    """The model in service (and its registration time), the last review, and breaches since."""
    resolved = registry.in_service()
    if resolved is None or resolved.version is None or resolved.registered_at is None:
        return ReviewState(None, None, [])
    champion = champion_info(registry, resolved.version, resolved.registered_at, resolved.run_id)
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


def version_links(
    registry: Registry, links: MlflowLinks, champion: ChampionInfo, challenger: str, run_id: str
) -> dict[str, str]:
    name = registry.name
    found = {
        "champion": links.version(name, champion.version, f"v{champion.version}"),
        "challenger": links.version(name, challenger, f"v{challenger}"),
        "challenger_run": links.run(run_id),
    }
    if champion.run_id:
        found["champion_run"] = links.run(champion.run_id)
    return found


@task(name="compare-versions", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def compare(
    registry: Registry,
    champion: ChampionInfo,
    trained: tuple[str, str],
    prepared: PreparedData,
    budget: tuple[SearchBudget, str],
    reasons: list[str],
    links: MlflowLinks,
) -> Comparison:
    """Both versions scored on the same test rows (the same data and seed give the same split).

    ``trained`` is the challenger's (version, training run id); ``budget`` its budget and why.
    """
    test = prepared.split.test
    version, run_id = trained
    y = test[LABEL].to_numpy()
    champion_p, challenger_p = (
        registry.score(registry.resolve(f"models:/{registry.name}/{number}"), test)["p_elliptical"].to_numpy()
        for number in (champion.version, version)
    )
    ours, theirs = classification_metrics(y, champion_p), classification_metrics(y, challenger_p)
    return Comparison(
        model_name=registry.name,
        champion=champion,
        challenger_version=version,
        challenger_run_id=run_id,
        champion_metrics=ours,
        challenger_metrics=theirs,
        counts=prepared.counts,
        source=prepared.source,
        reasons=reasons,
        at=datetime.now(UTC),
        challenger_budget=budget[0],
        budget_reason=budget[1],
        challenger_digest=prepared.digest,
        links=version_links(registry, links, champion, version, run_id),
        intervals=paired_bootstrap(y, challenger_p, champion_p),
    )


@task(name="log-review-run", cache_policy=NO_CACHE)
def log_review_run(registry: Registry, experiment: str, comparison: Comparison, markdown: str) -> str:
    """One run per review (left open until the decision): both models' metrics and differences."""
    c, tracking = comparison, registry.tracking
    champion_budget = c.champion.budget
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
            "champion_budget": str(champion_budget) if champion_budget else "not recorded",
            "champion_data_digest": c.champion.data_digest or "not recorded",
            **{f"champion_data.{key}": value for key, value in c.champion.data_sizes.items()},
            "challenger_version": c.challenger_version,
            "challenger_training_run": c.challenger_run_id,
            "challenger_budget": c.challenger_budget.describe(),
            "challenger_budget_reason": c.budget_reason,
            "challenger_data_digest": c.challenger_digest,
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
    tracking.log_text(run_id, markdown, "review/comparison.md")
    return run_id


def publish_comparison(markdown: str) -> UUID:
    """The ``review-comparison`` artifact; its id lets the decision rewrite it in place."""
    created = create_markdown_artifact(
        key="review-comparison", markdown=markdown, description="Champion vs challenger"
    )
    assert isinstance(created, UUID)  # called from a synchronous flow: the id, not a coroutine
    return created


def rewrite_artifact(artifact_id: UUID, markdown: str) -> None:
    """Replace an artifact's text (the comparison once decided: no stale "waiting" section)."""
    with get_client(sync_client=True) as client:
        client.update_artifact(artifact_id, ArtifactUpdate(data=markdown))


def _retag_gate(registry: Registry, version: str, decision: str, reason: str) -> None:
    """Rewrite a version's gate tags to what holds now; what the gate said at registration is kept."""
    tags = registry.client.get_model_version(registry.name, version).tags
    kept = {
        f"gate.registration_{key}": tags[f"gate.{key}"]
        for key in ("decision", "reason")
        if f"gate.{key}" in tags
    }
    registry.tag_version(version, {**kept, "gate.decision": decision, "gate.reason": reason})


def record_decision(
    registry: Registry, comparison: Comparison, record: DecisionRecord, review_run_id: str, markdown: str
) -> None:
    """Tag the review run and both versions; on approval move the alias, clear ``challenger`` and
    rewrite the gate tags so that aliases and tags agree.

    A plain function, not a task: after a pause times out the flow run is no longer running
    and Prefect would refuse to start tasks in it.
    """
    c, tags = comparison, decision_tags(comparison, record, review_run_id)
    for version in (c.champion.version, c.challenger_version):
        registry.tag_version(version, tags)
    tracking = registry.tracking
    tracking.set_tags(review_run_id, tags)
    tracking.log_text(review_run_id, markdown, "review/comparison.md")
    tracking.end_run(review_run_id)
    if record.outcome == APPROVED:
        registry.set_alias(registry.alias, c.challenger_version)
        if registry.version_for(CHALLENGER) == c.challenger_version:
            registry.client.delete_registered_model_alias(registry.name, CHALLENGER)
        when = f"{record.at:%Y-%m-%d}"
        _retag_gate(
            registry,
            c.challenger_version,
            registry.alias,
            f"approved by {record.reviewer} in the review of {when} ({c.headline()})",
        )
        _retag_gate(
            registry,
            c.champion.version,
            "replaced",
            f"replaced by v{c.challenger_version} in the review of {when}",
        )
    registry.set_model_tag(LAST_REVIEW_TAG, record.at.isoformat())


def publish_decision(comparison_id: UUID, comparison: str, decision: str) -> None:
    """The comparison artifact rewritten with the decision, and a ``review-decision`` artifact."""
    rewrite_artifact(comparison_id, comparison)
    create_markdown_artifact(
        key="review-decision",
        markdown=decision,
        description="The maintainer's decision on the retraining review",
    )


def decision_ui_url() -> str | None:
    """The Prefect UI's address, or None on Prefect's temporary server (which serves no UI)."""
    settings = get_current_settings()
    return settings.ui_url if settings.api.url else None


def current_flow_run_id() -> str:
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    return str(context.flow_run.id)


def wait_for_decision(form: type[ReviewDecision], timeout_seconds: int) -> ReviewDecision | None:
    """Pause this flow run until a maintainer resumes it with a decision; None on timeout.

    Prefect fails a run whose pause expires, so the review does not let it expire: when the
    decision timeout passes, a timer resumes the run itself with a "no answer" input (unless a
    maintainer answered first) and the run completes, keeping the champion. The pause's own
    timeout is only a safety net a few polls later.
    """
    flow_run_id = current_flow_run_id()
    poll = max(1, min(10, timeout_seconds // 30))
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        # a maintainer may have answered first, or the run is not paused (any more)
        with contextlib.suppress(Exception):
            resume_flow_run(
                UUID(flow_run_id), run_input={"approve": False, "reviewer": NO_ANSWER, "comment": ""}
            )

    timer = threading.Timer(timeout_seconds, contextvars.copy_context().run, args=(expire,))
    timer.daemon = True
    timer.start()
    try:
        decision = pause_flow_run(
            wait_for_input=form,
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


def submit_decision(flow_run_id: str, answer: Mapping[str, Any]) -> str:
    """Resume a paused review with ``answer`` (what the UI's Resume form sends); returns its name.

    ``ReviewDecisionError`` names the problem: not a review, not paused, or an answer the
    review's form refuses (approving a worse challenger without an override reason).
    """
    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        raise ReviewDecisionError(f"FLOW_RUN_ID: {flow_run_id!r} is not a flow run id (a UUID)") from None
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(run_id)
        except ObjectNotFound:
            raise ReviewDecisionError(f"flow run {flow_run_id} not found on this Prefect API") from None
        flow = client.read_flow(flow_run.flow_id)
    state = flow_run.state
    if flow.name != REVIEW_FLOW:
        raise ReviewDecisionError(f"flow run {flow_run_id} is a {flow.name} run, not a {REVIEW_FLOW} run")
    if state is None or not state.is_paused():
        name = state.name if state else "no state"
        raise ReviewDecisionError(f"flow run {flow_run_id} is not waiting for a decision (state: {name})")
    try:
        resume_flow_run(run_id, run_input=dict(answer))
    except RuntimeError as error:  # the server refused the input: its reason names the field
        raise ReviewDecisionError(f"decision refused: {error}") from None
    return flow_run.name
