"""The champion gate: does a newly trained model take over from the one in service?

The in-service alias is a setting (``mlflow.model_alias``, default ``champion``); a model that
does not take over gets ``challenger``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CHALLENGER = "challenger"


@dataclass(frozen=True)
class GateDecision:
    alias: str
    reason: str
    new_score: float
    champion_score: float | None
    champion_version: str | None
    margin: float

    def tags(self) -> dict[str, str]:
        return {
            "gate.decision": self.alias,
            "gate.reason": self.reason,
            "gate.new_f1_macro": f"{self.new_score:.6f}",
            "gate.champion_f1_macro": "" if self.champion_score is None else f"{self.champion_score:.6f}",
            "gate.champion_version": self.champion_version or "",
            "gate.margin": f"{self.margin:g}",
        }


def decide(
    new_score: float,
    champion_score: float | None,
    champion_version: str | None,
    margin: float,
    alias: str,
) -> GateDecision:
    """``alias`` (in service) when none holds it, or when the new model beats it by ``margin``."""
    if champion_score is None:
        return GateDecision(alias, f"no model holds '{alias}' yet", new_score, None, None, margin)
    gain = new_score - champion_score
    if gain >= margin and gain > 0:
        reason = (
            f"macro F1 {new_score:.4f} beats champion v{champion_version} {champion_score:.4f} by {gain:+.4f}"
        )
        return GateDecision(alias, reason, new_score, champion_score, champion_version, margin)
    reason = (
        f"macro F1 {new_score:.4f} vs champion v{champion_version} {champion_score:.4f} "
        f"({gain:+.4f}, margin {margin:g}): champion kept"
    )
    return GateDecision(CHALLENGER, reason, new_score, champion_score, champion_version, margin)


@dataclass(frozen=True)
class GateRule:
    """How a run is judged: the margin to beat, and whether it may take the alias at all."""

    margin: float
    promote: bool = True  # False for the review: only a maintainer moves the alias then

    def decide(
        self, new_score: float, champion_score: float | None, champion_version: str | None, alias: str
    ) -> GateDecision:
        decision = decide(new_score, champion_score, champion_version, self.margin, alias)
        if not self.promote and decision.alias != CHALLENGER:
            reason = f"{decision.reason}; review: awaits a maintainer"
            return replace(decision, alias=CHALLENGER, reason=reason)
        return decision
