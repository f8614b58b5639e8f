"""Classify flow: load the model once, score a catalogue (file, directory or glob of parts) into
Parquet, in this process or on a Dask cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from galaxy_morphology.core.markdown import markdown_table
from galaxy_morphology.core.settings import load_settings
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry
from galaxy_morphology.tasks.classify import (
    ClassifyCounts,
    classify_file_task,
    describe_model,
    load_model,
    rejects_path_for,
)


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
    parts: int
    engine: str
    pass_through: list[str]


def classify_markdown(summary: ClassifySummary, only_unlabelled: bool) -> str:
    rows: list[tuple[str, int]] = [("input", summary.input_rows)]
    if only_unlabelled:
        rows.append(("labelled, skipped", summary.skipped))
    rows += [("classified", summary.scored), ("rejected", summary.rejected)]
    parts = [
        "# Batch classification",
        f"Model: `{summary.model_uri}` ({summary.model_name} v{summary.model_version})",
        f"Input: `{summary.input_path}` ({summary.parts} part(s)), scored {_engine(summary.engine)}",
        f"Columns carried: `input_row`, {', '.join(f'`{name}`' for name in summary.pass_through)}",
        markdown_table(["", "rows"], rows),
    ]
    if summary.reasons:
        parts.append(markdown_table(["reject reason", "rows"], summary.reasons.items()))
    parts += [f"Predictions: `{summary.output_path}`", f"Rejects: `{summary.rejects_path}`"]
    return "\n\n".join(parts)


def _engine(engine: str) -> str:
    return "in this process" if engine == "local" else f"on the Dask cluster at {engine}"


def summarize(
    input_path: str,
    output: Path,
    model_uri: str,
    model_name: str,
    model_version: str | None,
    counts: ClassifyCounts,
) -> ClassifySummary:
    return ClassifySummary(
        input_path=input_path,
        output_path=str(output),
        rejects_path=str(rejects_path_for(output)),
        model_uri=model_uri,
        model_name=model_name,
        model_version=model_version,
        input_rows=counts.input_rows,
        skipped=counts.skipped,
        scored=counts.scored,
        rejected=counts.rejected,
        reasons=dict(counts.reasons.most_common()),
        parts=counts.parts,
        engine=counts.engine,
        pass_through=list(counts.carried),
    )


@flow(name="galaxy-classify")
def classify_flow(
    input_path: str,
    output_path: str,
    only_unlabelled: bool = False,
    model_uri: str = "",
    settings_file: str = "",
    dask_address: str = "",
    pass_through: tuple[str, ...] = (),
) -> ClassifySummary:
    """Classify every row of a catalogue (a file, or a directory or glob of parts); invalid rows go
    to a rejects file beside the output.

    Quick run opens the run form: input_path and output_path have no default.

    Args:
        input_path: Catalogue to classify: a CSV, CSV.gz or Parquet file, or a directory or glob of
            such parts, with the model's input columns.
        output_path: Predictions Parquet file to write (rejects go to <stem>.rejects.parquet beside it).
        only_unlabelled: Classify only the rows whose GZ1 `uncertain` flag is 1.
        model_uri: Model to use, e.g. models:/galaxy-morphology/3; empty: the in-service alias.
        settings_file: Settings YAML; empty: settings.yaml in the worker's folder (or $GALAXY_SETTINGS_FILE).
        dask_address: Dask scheduler that scores the chunks, e.g. tcp://127.0.0.1:8786; empty:
            training.dask_address (none: score here).
        pass_through: Input columns copied beside input_row into both outputs; empty:
            classify.pass_through (objid, specobjid when present, ra, dec).
    """
    overrides = {
        "training": {"dask_address": dask_address or None},
        "classify": {"pass_through": list(pass_through) or None},
    }
    settings = load_settings(overrides, Path(settings_file) if settings_file else None)
    registry = Registry.from_settings(settings)
    address = settings.training.dask_address
    # on a cluster the workers load the model; this process needs only its version and columns
    uri = model_uri or None
    model = describe_model(registry, uri) if address else load_model(registry, uri)
    output = Path(output_path)
    counts = classify_file_task(
        input_path,
        output,
        model,
        settings.classify.chunk_rows,
        only_unlabelled,
        settings.classify.pass_through,
        address,
        registry.tracking.uri,
    )
    resolved = model.resolved
    summary = summarize(input_path, output, resolved.requested, resolved.name, resolved.version, counts)
    publish_summary(summary, only_unlabelled)
    return summary


def publish_summary(summary: ClassifySummary, only_unlabelled: bool) -> None:
    """The counts as a Prefect artifact and one log line."""
    create_markdown_artifact(
        key="classify-summary",
        markdown=classify_markdown(summary, only_unlabelled),
        description="Batch classification counts",
    )
    run_logger().info(
        "%d rows: %d classified -> %s, %d rejected -> %s",
        summary.input_rows,
        summary.scored,
        summary.output_path,
        summary.rejected,
        summary.rejects_path,
    )
