"""Judge a scored batch: metrics, Evidently's drift, allowed ranges, status (pure computation).

The ranges are checked here rather than with Evidently's metric tests: the project's
headline metrics (macro F1, per-class recall) are not Evidently metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from galaxy_morphology.core.metric_names import AGREEMENT
from galaxy_morphology.core.settings import MonitoringSettings
from galaxy_morphology.monitoring.batch import Batch, agreement_value, batch_values, evidently_report, finite
from galaxy_morphology.monitoring.ranges import (
    FAIL,
    INSUFFICIENT,
    NOT_COMPUTED,
    PASS,
    Check,
    breaches,
    check_ranges,
    insufficient_reason,
)

BREACH = "breach"


@dataclass(frozen=True)
class Assessment:
    status: str  # pass | breach | insufficient
    checks: list[Check]
    values: dict[str, float]
    insufficient: str | None
    snapshot: Any | None  # the Evidently report, when both classes are present
    reference: str  # where the drift reference came from ("none" without one)

    @property
    def breached(self) -> list[Check]:
        return breaches(self.checks)


def assess(
    batch: Batch,
    current: pd.DataFrame | None,
    reference: pd.DataFrame | None,
    reference_source: str,
    settings: MonitoringSettings,
    unlabelled: pd.DataFrame | None = None,
) -> Assessment:
    """Every value of the batch checked against its allowed range.

    ``current`` holds the scored labelled rows, ``unlabelled`` the scored unlabelled ones (the
    agreement with the volunteers). A votes-only batch (no labelled rows) is judged on the
    agreement alone: the label metrics are not applicable to it.
    """
    values: dict[str, float] = {}
    snapshot = None
    if current is not None and batch.has_labels:
        values = batch_values(current["label"].to_numpy(), current["p_elliptical"].to_numpy())
        if all(count > 0 for count in batch.per_class.values()):
            snapshot, evidently_values = evidently_report(current, reference)
            values.update(evidently_values)
    too_few_unlabelled = len(batch.unlabelled) < settings.min_rows
    if not too_few_unlabelled:
        values[AGREEMENT] = agreement_value(batch, unlabelled)
    too_small, not_applicable = _judgeable(batch, settings, too_few_unlabelled)
    checks = check_ranges(values, settings.ranges, too_small is not None, not_applicable)
    uncomputed = [check.metric for check in checks if check.status == NOT_COMPUTED]
    if uncomputed and not too_small:
        too_small = f"could not compute {', '.join(uncomputed)}: a check that cannot run is never a pass"
    status = BREACH if breaches(checks) else (INSUFFICIENT if too_small else PASS)
    return Assessment(status, checks, values, too_small, snapshot, reference_source)


def _judgeable(
    batch: Batch, settings: MonitoringSettings, too_few_unlabelled: bool
) -> tuple[str | None, list[str]]:
    """Why the batch cannot be judged (or None), and the checks that do not apply to it."""
    if batch.has_labels:
        too_small = insufficient_reason(
            len(batch.labelled), batch.per_class, settings.min_rows, settings.min_per_class
        )
        return too_small, [AGREEMENT] if too_few_unlabelled else []
    label_checks = [name for name in settings.ranges if name != AGREEMENT]
    if AGREEMENT not in settings.ranges:
        return f"no labelled rows, and no {AGREEMENT} range to judge the unlabelled ones by", label_checks
    if too_few_unlabelled:
        return (
            f"no labelled rows; {len(batch.unlabelled)} unlabelled rows < min_rows {settings.min_rows}",
            label_checks,
        )
    return None, label_checks


def run_metrics(assessment: Assessment) -> dict[str, float]:
    """What the monitoring run logs as metrics: every finite value, and each judged check as
    ``check_passed.<metric>`` (1 pass, 0 fail), beside the value itself. Row counts are the
    run's parameters, the status of every check (not computed too) its tags."""
    metrics = finite(assessment.values)
    metrics.update(
        {
            f"check_passed.{c.metric}": float(c.status == PASS)
            for c in assessment.checks
            if c.status in (PASS, FAIL)
        }
    )
    return metrics


def report_document(assessment: Assessment, model: dict[str, Any], batch: Batch) -> dict[str, Any]:
    """``values.json`` of the report folder."""
    return {
        "status": assessment.status,
        "insufficient": assessment.insufficient,
        "model": model,
        "batch": {
            "path": batch.path,
            "digest": batch.digest,
            "counts": batch.counts,
            "dropped": batch.dropped,
            "per_class": batch.per_class,
        },
        "reference": assessment.reference,
        "values": assessment.values,
        "checks": [check.as_dict() for check in assessment.checks],
    }


def run_tags(assessment: Assessment, report_dir: str) -> dict[str, str]:
    return {
        "galaxy.monitoring.status": assessment.status,
        "galaxy.monitoring.breached": ",".join(c.metric for c in assessment.breached) or "none",
        "galaxy.monitoring.reference": assessment.reference,
        "galaxy.monitoring.report_dir": report_dir,
        **{f"galaxy.monitoring.check.{c.metric}": c.status for c in assessment.checks},
    }


def summary_line(assessment: Assessment) -> str:
    values = ", ".join(
        f"{c.metric}={'n/a' if c.value is None else f'{c.value:.4f}'} {c.status}" for c in assessment.checks
    )
    return f"monitoring {assessment.status}: {values}"
