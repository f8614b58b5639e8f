"""The retraining review's pure logic: is a review due, and the champion/challenger comparison."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from galaxy_morphology.core.markdown import markdown_table

if TYPE_CHECKING:
    from galaxy_morphology.core.metrics import Interval

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
    """Champion and challenger scored on the same test rows, and why the review ran."""

    model_name: str
    champion: ChampionInfo
    challenger_version: str
    challenger_run_id: str
    champion_metrics: Mapping[str, float]
    challenger_metrics: Mapping[str, float]
    counts: Mapping[str, int]
    source: str
    reasons: list[str]
    at: datetime
    # challenger minus champion, 95% paired bootstrap over the same test rows (core.metrics)
    intervals: Mapping[str, Interval] = field(default_factory=dict)

    @property
    def differences(self) -> dict[str, float]:
        return differences(self.champion_metrics, self.challenger_metrics)


def comparison_markdown(comparison: Comparison) -> str:
    c = comparison
    diff = c.differences
    rows = [
        (
            key,
            c.champion_metrics[key],
            c.challenger_metrics[key],
            f"{diff[key]:+.4f}",
            f"[{c.intervals[key].low:+.4f}, {c.intervals[key].high:+.4f}]" if key in c.intervals else "",
        )
        for key in c.champion_metrics
        if key in diff and not key.startswith("support")
    ]
    return "\n\n".join(
        [
            f"# Retraining review of {c.model_name}: champion v{c.champion.version} vs challenger "
            f"v{c.challenger_version}",
            "Why: " + "; ".join(c.reasons),
            f"Champion registered {c.champion.registered_at:%Y-%m-%d %H:%M} UTC; "
            f"review {c.at:%Y-%m-%d %H:%M} UTC.",
            f"Data: `{c.source}`; rows: " + ", ".join(f"{key} {value}" for key, value in c.counts.items()),
            "## Both models on the same test split",
            markdown_table(
                [
                    "metric",
                    f"champion v{c.champion.version}",
                    "challenger",
                    "difference",
                    "95% paired bootstrap",
                ],
                rows,
            ),
            "## Decision",
            "The review never promotes on its own. Resume this flow run in the Prefect UI and fill "
            "the form: **approve** moves `champion` to the challenger; leaving it unchecked keeps "
            "the champion. No answer before the timeout keeps the champion.",
        ]
    )


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
