"""The monitoring report: a folder with the Evidently HTML and every value as JSON, plus markdown."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from galaxy_morphology.core.markdown import markdown_table
from galaxy_morphology.io.registry import ResolvedModel
from galaxy_morphology.monitoring.assess import Assessment
from galaxy_morphology.monitoring.batch import Batch
from galaxy_morphology.monitoring.ranges import Check

HTML_NAME = "evidently_report.html"
EVIDENTLY_JSON_NAME = "evidently_report.json"
VALUES_NAME = "values.json"


def report_folder(reports_dir: Path, batch_digest: str, now: datetime | None = None) -> Path:
    """``<reports_dir>/<UTC timestamp>-<digest>``, created (unique even within a second)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    folder = Path(reports_dir) / f"{stamp}-{batch_digest[:16]}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(folder: Path, snapshot: Any | None, document: dict[str, Any]) -> dict[str, Path]:
    """Save the Evidently HTML/JSON (when there is a snapshot) and ``values.json``."""
    written = {}
    if snapshot is not None:
        snapshot.save_html(str(folder / HTML_NAME))
        (folder / EVIDENTLY_JSON_NAME).write_text(snapshot.json())
        written["html"] = folder / HTML_NAME
        written["evidently_json"] = folder / EVIDENTLY_JSON_NAME
    (folder / VALUES_NAME).write_text(json.dumps(_json_safe(document), indent=2, sort_keys=True))
    written["values"] = folder / VALUES_NAME
    return written


def _format(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def checks_table(checks: Sequence[Check]) -> str:
    return markdown_table(
        ["metric", "value", "allowed range", "status"],
        [
            (c.metric, _format(c.value), c.range, "**FAIL**" if c.status == "fail" else c.status)
            for c in checks
        ],
    )


def monitoring_markdown(
    assessment: Assessment,
    model: ResolvedModel,
    batch: Batch,
    report_location: str,
    links: Mapping[str, str],
) -> str:
    """``links``: markdown links to the model version, the MLflow run and (when produced) the
    Evidently report logged to it."""
    lines = [
        f"# Monitoring: {assessment.status.upper()}",
        "",
        f"- model: `{model.requested}`: {links['version']}",
        f"- batch: `{batch.path}` (digest `{batch.digest}`)",
        f"- rows: {', '.join(f'{k} {v}' for k, v in batch.counts.items())}",
        f"- MLflow run: {links['run']}",
        f"- Evidently report: {links['html']}" if "html" in links else "- Evidently report: not produced",
        f"- local copy of the report: `{report_location}`",
    ]
    if assessment.insufficient:
        lines += ["", f"Batch too small to judge ({assessment.insufficient}): no check is alerted."]
    lines += ["", checks_table(assessment.checks)]
    return "\n".join(lines)


def alert_text(
    breached: Sequence[Check], model_name: str, model_version: str, batch_path: str, report_location: str
) -> tuple[str, str]:
    """Subject and body of the one notification sent for a batch with breaches."""
    subject = (
        f"galaxy-morphology monitoring: {len(breached)} metric(s) out of range "
        f"for {model_name} v{model_version}"
    )
    body_lines = [f"Model {model_name} version {model_version}, batch {batch_path}:"]
    for check in breached:
        body_lines.append(f"- {check.metric} = {_format(check.value)} outside allowed {check.range}")
    body_lines.append(f"Report: {report_location}")
    return subject, "\n".join(body_lines)
