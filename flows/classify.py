"""Classify flow: load the model once, score a catalogue file chunk by chunk into Parquet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from galaxy.settings import load_settings
from serving.server import default_model_uri
from tasks.score import ClassifyCounts, classify_file_task, load_model_task, rejects_path_for


@dataclass(frozen=True)
class ClassifySummary:
    input_path: str
    output_path: str
    rejects_path: str
    model_uri: str
    model_name: str
    model_version: str | None
    input_rows: int
    skipped: int
    scored: int
    rejected: int
    reasons: dict[str, int]


def classify_markdown(summary: ClassifySummary, only_unlabelled: bool) -> str:
    lines = [
        "# Batch classification",
        "",
        f"Model: `{summary.model_uri}` ({summary.model_name} v{summary.model_version})",
        "",
        "| | rows |",
        "|---|---:|",
        f"| input | {summary.input_rows} |",
    ]
    if only_unlabelled:
        lines.append(f"| labelled, skipped | {summary.skipped} |")
    lines += [f"| classified | {summary.scored} |", f"| rejected | {summary.rejected} |"]
    if summary.reasons:
        lines += ["", "| reject reason | rows |", "|---|---:|"]
        lines += [f"| {reason} | {count} |" for reason, count in summary.reasons.items()]
    lines += ["", f"Predictions: `{summary.output_path}`", "", f"Rejects: `{summary.rejects_path}`"]
    return "\n".join(lines)


@flow(name="galaxy-classify")
def classify_flow(
    input_path: str,
    output_path: str,
    only_unlabelled: bool = False,
    model_uri: str | None = None,
    settings_file: str | None = None,
) -> ClassifySummary:
    """Classify every row of a catalogue file; invalid rows go to a rejects file beside the output."""
    log = get_run_logger()
    settings = load_settings(None, Path(settings_file) if settings_file else None)
    uri = model_uri or default_model_uri(settings)
    model = load_model_task(uri, settings.tracking_uri())
    output = Path(output_path)
    counts: ClassifyCounts = classify_file_task(
        Path(input_path), output, model, settings.classify.chunk_rows, only_unlabelled
    )
    summary = ClassifySummary(
        input_path=str(input_path),
        output_path=str(output),
        rejects_path=str(rejects_path_for(output)),
        model_uri=uri,
        model_name=model.name,
        model_version=model.version,
        input_rows=counts.input_rows,
        skipped=counts.skipped,
        scored=counts.scored,
        rejected=counts.rejected,
        reasons=dict(counts.reasons.most_common()),
    )
    create_markdown_artifact(
        key="classify-summary",
        markdown=classify_markdown(summary, only_unlabelled),
        description="Batch classification counts",
    )
    log.info(
        "%d rows: %d classified -> %s, %d rejected -> %s",
        summary.input_rows,
        summary.scored,
        summary.output_path,
        summary.rejected,
        summary.rejects_path,
    )
    return summary
