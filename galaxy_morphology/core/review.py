"""The retraining review's pure logic: is a review due, and the champion/challenger comparison."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from galaxy_morphology.core.markdown import markdown_table
from galaxy_morphology.core.training import SearchBudget

if TYPE_CHECKING:
    from galaxy_morphology.core.metrics import Interval

APPROVED = "approved"
REJECTED = "rejected"
TIMED_OUT = "timeout"
GATE_METRIC = "f1_macro"  # the champion gate's metric: a challenger worse on it needs an override
KEY_METRICS = ("f1_macro", "roc_auc", "accuracy", "recall_elliptical", "recall_spiral")
SIZE_KEYS = ("labelled", "train", "validation", "test")
BUDGET_TAG = "galaxy.budget"
BudgetChoice = Literal["champion", "full", "quick"]


@dataclass(frozen=True)
class Budget:
    """The search budget a version was trained with."""

    name: str  # full | quick | custom
    search: str
    n_iter: int
    cv_folds: int

    def __str__(self) -> str:
        return f"{self.name} ({self.search} search, {self.n_iter} candidates x {self.cv_folds}-fold CV)"


def budget_tags(budget: SearchBudget) -> dict[str, str]:
    """Version tags naming the budget (read back by ``recorded_budget``)."""
    return {
        f"{BUDGET_TAG}.name": budget.name,
        f"{BUDGET_TAG}.search": budget.search,
        f"{BUDGET_TAG}.n_iter": str(budget.n_iter),
        f"{BUDGET_TAG}.cv_folds": str(budget.cv_folds),
    }


def recorded_budget(tags: Mapping[str, str], params: Mapping[str, str]) -> Budget | None:
    """A version's budget from its tags, else from its training run's parameters (older versions)."""
    keys = ("search", "n_iter", "cv_folds")
    if all(f"{BUDGET_TAG}.{key}" in tags for key in keys):
        name = tags.get(f"{BUDGET_TAG}.name", "custom")
        values = [tags[f"{BUDGET_TAG}.{key}"] for key in keys]
    elif all(key in params for key in keys):
        name = params.get("budget") or ("quick" if params.get("quick") == "True" else "full")
        values = [params[key] for key in keys]
    else:
        return None
    return Budget(name, values[0], int(values[1]), int(values[2]))


def challenger_budget(
    choice: BudgetChoice, champion: Budget | None, full: SearchBudget, quick: SearchBudget
) -> tuple[SearchBudget, str]:
    """The challenger's budget and why: the champion's, unless the maintainer asked for another."""
    if choice == "quick":
        return quick, "asked for the quick budget"
    if choice == "full" or champion is None:
        why = "asked for the full budget" if choice == "full" else "the champion's budget is not recorded"
        return full, f"{why}: the settings' full budget"
    matched = replace(
        full, search=champion.search, n_iter=champion.n_iter, cv_folds=champion.cv_folds, name=champion.name
    )
    return matched, "the champion's budget (like with like)"


@dataclass(frozen=True)
class ChampionInfo:
    version: str
    registered_at: datetime
    run_id: str | None
    budget: Budget | None = None
    data_digest: str | None = None
    data_sizes: Mapping[str, str] = field(default_factory=dict)


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


def is_breach(tags: Mapping[str, str]) -> bool:
    """A monitoring run that breached: ``galaxy.monitoring.status = breach`` (or ``galaxy.breach = true``)."""
    return tags.get("galaxy.monitoring.status") == "breach" or tags.get("galaxy.breach") == "true"


def due_reasons(state: ReviewState, now: datetime, max_age_days: int, force: bool) -> list[str]:
    """Why a review is due (empty: not due)."""
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


def differences(champion: Mapping[str, float], challenger: Mapping[str, float]) -> dict[str, float]:
    """Challenger minus champion, metric by metric."""
    return {key: challenger[key] - champion[key] for key in champion if key in challenger}


@dataclass(frozen=True)
class Comparison:
    """Champion and challenger scored on the same test rows, what each was trained with, and why."""

    model_name: str
    champion: ChampionInfo
    challenger_version: str
    challenger_run_id: str
    champion_metrics: Mapping[str, float]
    challenger_metrics: Mapping[str, float]
    counts: Mapping[str, int]  # the challenger's data: rows at each step, split sizes
    source: str
    reasons: list[str]
    at: datetime
    challenger_budget: SearchBudget
    budget_reason: str
    challenger_digest: str
    links: Mapping[str, str] = field(default_factory=dict)  # markdown links: champion, challenger, runs
    # challenger minus champion, 95% paired bootstrap over the same test rows (core.metrics)
    intervals: Mapping[str, Interval] = field(default_factory=dict)

    @property
    def differences(self) -> dict[str, float]:
        return differences(self.champion_metrics, self.challenger_metrics)

    @property
    def gate_difference(self) -> float:
        return self.differences[GATE_METRIC]

    @property
    def worse_on_gate(self) -> bool:
        """The challenger scores below the champion on the gate metric: approving needs an override."""
        return self.gate_difference < 0

    def link(self, key: str, fallback: str) -> str:
        return self.links.get(key, fallback)

    def headline(self) -> str:
        """Both versions with their gate metric and the difference, in one line."""
        return (
            f"champion v{self.champion.version} {GATE_METRIC} {self.champion_metrics[GATE_METRIC]:.4f}, "
            f"challenger v{self.challenger_version} {self.challenger_metrics[GATE_METRIC]:.4f} "
            f"({self.gate_difference:+.4f})"
        )


@dataclass(frozen=True)
class DecisionRecord:
    """What the maintainer decided (or that nobody did), and the version in service after it."""

    outcome: str  # approved | rejected | timeout
    reviewer: str
    comment: str
    override_reason: str
    at: datetime
    in_service_after: str


def decision_problem(approve: bool, override_reason: str, comparison: Comparison) -> str | None:
    """Why an answer cannot be taken as given: approving a worse challenger without a reason."""
    if approve and comparison.worse_on_gate and not override_reason.strip():
        return (
            f"override_reason: challenger v{comparison.challenger_version} is worse than champion "
            f"v{comparison.champion.version} on {GATE_METRIC} ({comparison.gate_difference:+.4f}); "
            "approving it needs a reason"
        )
    return None


def decision_record(
    c: Comparison,
    now: datetime,
    timeout_seconds: int,
    answer: tuple[bool, str, str, str] | None,
) -> DecisionRecord:
    """The decision from an answer (approve, reviewer, comment, override reason); None: no answer.

    An approval the form should have refused (a worse challenger, no reason) keeps the champion.
    """
    if answer is None:
        comment = f"no decision within {timeout_seconds} s: champion kept"
        return DecisionRecord(TIMED_OUT, "", comment, "", now, c.champion.version)
    approve, reviewer, comment, override = answer[0], answer[1], answer[2], answer[3].strip()
    problem = decision_problem(approve, override, c)
    if problem is not None:
        return DecisionRecord(
            REJECTED, reviewer, f"approval refused: {problem}. {comment}", "", now, c.champion.version
        )
    if approve:
        return DecisionRecord(APPROVED, reviewer, comment, override, now, c.challenger_version)
    return DecisionRecord(REJECTED, reviewer, comment, override, now, c.champion.version)


def _metric_rows(
    c: Comparison, keys: tuple[str, ...] | None = None
) -> list[tuple[str, float, float, str, str]]:
    """Each metric of both versions, the difference and its 95% paired bootstrap interval."""
    diff = c.differences
    names = keys or tuple(key for key in c.champion_metrics if key in diff and not key.startswith("support"))
    return [
        (
            key,
            c.champion_metrics[key],
            c.challenger_metrics[key],
            f"{diff[key]:+.4f}",
            f"[{c.intervals[key].low:+.4f}, {c.intervals[key].high:+.4f}]" if key in c.intervals else "",
        )
        for key in names
    ]


def _sizes(sizes: Mapping[str, object]) -> str:
    found = [f"{key} {sizes[key]}" for key in SIZE_KEYS if key in sizes]
    return ", ".join(found) or "not recorded"


def training_table(c: Comparison) -> str:
    """Budget, data digest and sizes of both versions, side by side."""
    champion = c.champion
    return markdown_table(
        ["", f"champion v{champion.version}", f"challenger v{c.challenger_version}"],
        [
            ("budget", champion.budget or "not recorded", f"{c.challenger_budget.describe()}"),
            ("data digest", f"`{champion.data_digest or 'not recorded'}`", f"`{c.challenger_digest}`"),
            ("rows", _sizes(champion.data_sizes), _sizes(c.counts)),
            ("registered", f"{champion.registered_at:%Y-%m-%d %H:%M} UTC", f"{c.at:%Y-%m-%d %H:%M} UTC"),
        ],
    )


def form_description(c: Comparison) -> str:
    """The decision form's text: what is compared, the key metrics, and what each answer does."""
    alias = "champion"
    lines = [
        f"**Retraining review of {c.model_name}**: {c.link('champion', f'champion v{c.champion.version}')} "
        f"against {c.link('challenger', f'challenger v{c.challenger_version}')}, both scored on the "
        f"same {c.counts.get('test', '?')} test rows.",
        "",
        markdown_table(
            [
                "metric",
                f"champion v{c.champion.version}",
                f"challenger v{c.challenger_version}",
                "difference",
                "95% paired bootstrap",
            ],
            _metric_rows(c, tuple(key for key in KEY_METRICS if key in c.differences)),
        ),
        "",
        f"Challenger budget: {c.challenger_budget.describe()} ({c.budget_reason}); champion: "
        f"{c.champion.budget or 'not recorded'}.",
        "",
        f"**approve** on: `{alias}` moves to v{c.challenger_version}. Off (reject): v{c.champion.version} "
        "stays in service. No answer before the timeout keeps the champion.",
    ]
    if c.worse_on_gate:
        lines += [
            "",
            f"**The challenger is worse on {GATE_METRIC} ({c.gate_difference:+.4f}).** Approving it is "
            "refused unless **override_reason** says why.",
        ]
    return "\n".join(lines)


def how_to_decide(flow_run_id: str, ui_url: str | None) -> str:
    """Where a maintainer answers: the run's page in the Prefect UI, or the command line."""
    command = (
        f"`galaxy review decide {flow_run_id} --approve|--reject --reviewer NAME --comment TEXT"
        " [--override-reason TEXT]`"
    )
    if ui_url:
        page = f"[{flow_run_id}]({ui_url}/runs/flow-run/{flow_run_id})"
        return f"Resume flow run {page} in the Prefect UI, or run {command}."
    return (
        f"Run {command} (same Prefect home). This run uses Prefect's temporary server, which has no "
        "UI: to decide in the UI, start `prefect server start` and set "
        "`PREFECT_API_URL=http://127.0.0.1:4200/api` before `galaxy review`."
    )


def pending_section(c: Comparison, instructions: str, timeout_seconds: int) -> str:
    warning = (
        f" The challenger is worse on {GATE_METRIC} ({c.gate_difference:+.4f}): approving it needs an "
        "override reason."
        if c.worse_on_gate
        else ""
    )
    return (
        f"## Decision: waiting (up to {timeout_seconds} s)\n\nThe review never promotes on its own. "
        f"{instructions}{warning} No answer before the timeout keeps the champion."
    )


def decided_section(c: Comparison, record: DecisionRecord) -> str:
    who = f" by {record.reviewer}" if record.reviewer else ""
    lines = [
        f"## Decision: {record.outcome}{who}, {record.at:%Y-%m-%d %H:%M} UTC",
        f"In service after it: v{record.in_service_after}.",
    ]
    if record.comment:
        lines.append(f"Comment: {record.comment}")
    if record.override_reason:
        lines.append(
            f"Override of a worse {GATE_METRIC} ({c.gate_difference:+.4f}): {record.override_reason}"
        )
    return "\n\n".join(lines)


def comparison_markdown(c: Comparison, decision: str) -> str:
    """The side-by-side report; ``decision`` is the pending or decided section."""
    return "\n\n".join(
        [
            f"# Retraining review of {c.model_name}: champion v{c.champion.version} vs challenger "
            f"v{c.challenger_version}",
            "Why: " + "; ".join(c.reasons),
            f"Champion: {c.link('champion', f'v{c.champion.version}')} "
            f"(training {c.link('champion_run', 'run not recorded')}); challenger: "
            f"{c.link('challenger', f'v{c.challenger_version}')} "
            f"(training {c.link('challenger_run', c.challenger_run_id)}).",
            "## What each was trained with",
            training_table(c),
            f"The challenger's budget is {c.budget_reason}. Data: `{c.source}`; rows: "
            + ", ".join(f"{key} {value}" for key, value in c.counts.items()),
            "## Both models on the same test split",
            markdown_table(
                [
                    "metric",
                    f"champion v{c.champion.version}",
                    f"challenger v{c.challenger_version}",
                    "difference",
                    "95% paired bootstrap",
                ],
                _metric_rows(c),
            ),
            decision,
        ]
    )


def decision_markdown(c: Comparison, record: DecisionRecord, review_run: str) -> str:
    """The ``review-decision`` artifact."""
    return "\n\n".join(
        [
            f"# Review decision: {record.outcome} ({c.headline()})",
            decided_section(c, record).split("\n\n", 1)[1],
            f"Reviewer: {record.reviewer or 'nobody'}. Review run: {review_run}.",
        ]
    )


def decision_tags(c: Comparison, record: DecisionRecord, review_run_id: str) -> dict[str, str]:
    """Tags recording the decision, for the review run and both versions."""
    return {
        "galaxy.review.decision": record.outcome,
        "galaxy.review.reviewer": record.reviewer,
        "galaxy.review.comment": record.comment,
        "galaxy.review.override_reason": record.override_reason,
        "galaxy.review.run_id": review_run_id,
        "galaxy.review.decided_at": record.at.isoformat(),
        "galaxy.review.champion_version": c.champion.version,
        "galaxy.review.challenger_version": c.challenger_version,
    }


def not_due_message(
    state: ReviewState, model_name: str, alias: str, max_age_days: int, now: datetime
) -> tuple[str, str]:
    """Title and text for a review that does not run: no model in service, or nothing due."""
    if state.champion is None:
        return (
            "Review",
            f"No `{alias}` alias on {model_name}: run the training flow first; nothing to review.",
        )
    champion = state.champion
    age = (now - champion.registered_at).days
    since = state.last_review or champion.registered_at
    return "Review not due", (
        f"Champion v{champion.version} is {age} days old (review after {max_age_days}) and "
        f"monitoring reported no breach since {since:%Y-%m-%d}: no review due."
    )
