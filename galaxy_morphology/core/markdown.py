"""Markdown summaries for the Prefect UI (pure string building)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def markdown_table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def training_markdown(
    families: list[Any],
    winner: str,
    test_metrics: Mapping[str, float],
    decision: Any,
    model_name: str,
    version: str,
    links: Mapping[str, str],
    source: str,
    counts: Mapping[str, int],
    intervals: Mapping[str, Any] | None = None,
    notes: Iterable[str] = (),
) -> str:
    """``links``: markdown links to the MLflow run, the model version and the evaluation figures;
    ``intervals``: 95% bootstrap intervals of the test metrics; ``notes``: selection,
    calibration and volunteer-agreement lines."""
    intervals = intervals or {}
    family_rows = [
        (
            f"**{r.family}**" if r.family == winner else r.family,
            "yes" if r.reference else "no",
            r.cv_mean,
            r.cv_std,
            r.validation["f1_macro"],
            r.validation["roc_auc"],
            r.n_candidates,
            f"{r.fit_seconds:.1f}",
            f"{r.predict_ms:.2f}",
            "-" if r.selection_scores is None else f"{r.selection_mean:.4f} ± {r.selection_se:.4f}",
        )
        for r in sorted(families, key=lambda r: -r.validation["f1_macro"])
    ]
    metric_rows = [
        (key, value, intervals[key].describe() if key in intervals else "")
        for key, value in test_metrics.items()
        if not key.startswith("support")
    ]
    return "\n\n".join(
        [
            f"# Training run: winner **{winner}**, {model_name} v{version} -> `{decision.alias}`",
            f"MLflow: {links['run']}; model version {links['version']}; test split figures: "
            f"{links['confusion']}, {links['roc']}.",
            f"Data: `{source}`; rows: " + ", ".join(f"{key} {value}" for key, value in counts.items()),
            "## Families (tuned on train by stratified K-fold CV, compared on validation)",
            markdown_table(
                [
                    "family",
                    "reference study",
                    "CV macro F1",
                    "CV std",
                    "val macro F1",
                    "val ROC AUC",
                    "candidates",
                    "fit s",
                    "predict ms (1 record)",
                    "repeated CV macro F1 ± SE (selection)",
                ],
                family_rows,
            ),
            *notes,
            "## Winner on the test split (refit on train+validation, evaluated once)",
            markdown_table(["metric", "value", "95% bootstrap interval"], metric_rows),
            "## Champion gate",
            f"Decision: **{decision.alias}**. {decision.reason}.",
        ]
    )
