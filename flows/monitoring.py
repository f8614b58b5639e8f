"""Monitoring flow: labelled batch -> champion scores -> metrics, drift, ranges -> report, run, alerts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.data import skyserver_request
from galaxy.settings import Settings, load_settings
from monitoring.alerts import Delivery
from monitoring.metrics import BatchError, batch_values, evidently_report, finite
from monitoring.ranges import FAIL, INSUFFICIENT, PASS, Check, breaches, check_ranges, insufficient_reason
from monitoring.report import monitoring_markdown, report_folder, write_report
from tasks.ingest import SkyServerRequest
from tasks.monitor import (
    alert,
    load_batch,
    load_reference,
    load_skyserver_batch,
    log_monitoring_run,
    resolve_model_task,
    score,
)

BREACH = "breach"


@dataclass(frozen=True)
class MonitoringResult:
    status: str  # pass | breach | insufficient
    checks: list[Check]
    values: dict[str, float]
    model_version: str
    batch_digest: str
    run_id: str
    report_dir: str
    html: str | None
    delivery: Delivery | None = None
    insufficient: str | None = None
    reference: str = "none"
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def breached(self) -> list[Check]:
        return breaches(self.checks)


def run_monitoring(
    settings: Settings,
    batch_path: str | None,
    model_uri: str | None = None,
    window: SkyServerRequest | None = None,
) -> MonitoringResult:
    """The monitoring steps on loaded settings. Nothing is recorded when the batch is unusable."""
    log = get_run_logger()
    uri = settings.tracking_uri()
    monitoring = settings.monitoring
    labels = settings.labels
    if window is not None:
        batch = load_skyserver_batch(
            window, settings.data.cache_dir, settings.skyserver.base_url, labels.rule, labels.threshold
        )
        batch_path = batch.path
    elif batch_path is not None:
        batch = load_batch(batch_path, labels.rule, labels.threshold)
    else:
        raise BatchError("give a batch file, or a SkyServer window (after_objid and rows)")
    champion = resolve_model_task(uri, settings.mlflow.model_name, model_uri)
    log.info("monitoring %s (version %s) on %s", champion.uri, champion.version, batch_path)
    too_small = insufficient_reason(
        len(batch.labelled), batch.per_class, monitoring.min_rows, monitoring.min_per_class
    )
    reference, reference_source = load_reference(uri, champion, settings)
    scored = score(champion.uri, {"current": batch.labelled, "reference": reference})
    current = scored["current"]
    values = batch_values(current["label"].to_numpy(), current["p_elliptical"].to_numpy())
    snapshot = None
    if all(count > 0 for count in batch.per_class.values()):
        snapshot, evidently_values = evidently_report(current, scored["reference"])
        values.update(evidently_values)
    else:
        log.warning("batch holds a single class: no Evidently report")
    checks = check_ranges(values, monitoring.ranges, insufficient=too_small is not None)
    breached = breaches(checks)
    status = INSUFFICIENT if too_small else (BREACH if breached else PASS)
    folder = report_folder(monitoring.reports_dir, batch.digest)
    document = {
        "status": status,
        "insufficient": too_small,
        "model": {"uri": champion.uri, "name": champion.name, "version": champion.version},
        "batch": {
            "path": batch_path,
            "digest": batch.digest,
            "counts": batch.counts,
            "dropped": batch.dropped,
            "per_class": batch.per_class,
        },
        "reference": reference_source,
        "values": values,
        "checks": [check.as_dict() for check in checks],
    }
    written = write_report(folder, snapshot, document)
    html = str(written["html"].resolve()) if "html" in written else None
    metrics = finite(values)
    metrics.update({f"check.{c.metric}": float(c.status == FAIL) for c in checks if c.status in (PASS, FAIL)})
    metrics["checks_breached"] = float(len(breached))
    metrics.update({f"rows.{key}": float(count) for key, count in batch.counts.items()})
    run_id = log_monitoring_run(
        uri,
        settings.mlflow.monitoring_experiment,
        settings.mlflow.artifact_root,
        champion,
        batch,
        metrics,
        {
            "galaxy.monitoring.status": status,
            "galaxy.monitoring.breached": ",".join(c.metric for c in breached) or "none",
            "galaxy.monitoring.reference": reference_source,
            "galaxy.monitoring.report_dir": str(folder.resolve()),
        },
        folder,
    )
    location = str(folder.resolve())
    create_markdown_artifact(
        key="monitoring-report",
        markdown=monitoring_markdown(
            status=status,
            checks=checks,
            model_uri=champion.uri,
            model_version=champion.version,
            batch_path=batch_path,
            batch_digest=batch.digest,
            counts=batch.counts,
            report_location=location,
            html_location=html,
            run_id=run_id,
            insufficient=too_small,
        ),
        description="Monitoring checks of the champion on a labelled batch",
    )
    delivery = None
    if breached:
        delivery = alert(
            breached,
            champion,
            batch_path,
            f"{location} (MLflow run {run_id})",
            monitoring.notification_block,
            monitoring.webhook_url_env,
        )
    log.info(
        "monitoring %s: %s",
        status,
        ", ".join(
            f"{c.metric}={'n/a' if c.value is None or math.isnan(c.value) else f'{c.value:.4f}'} {c.status}"
            for c in checks
        ),
    )
    return MonitoringResult(
        status=status,
        checks=checks,
        values=values,
        model_version=champion.version,
        batch_digest=batch.digest,
        run_id=run_id,
        report_dir=location,
        html=html,
        delivery=delivery,
        insufficient=too_small,
        reference=reference_source,
        counts=batch.counts,
    )


@flow(name="galaxy-monitoring")
def monitoring_flow(
    batch_path: str | None = None,
    model_uri: str | None = None,
    settings_file: str | None = None,
    after_objid: int | None = None,
    rows: int | None = None,
) -> MonitoringResult:
    """Score a labelled batch (a file, or a SkyServer window of ``rows`` rows after ``after_objid``)
    with the champion, check metrics and drift, report and alert."""
    settings = load_settings(None, Path(settings_file) if settings_file else None)
    window = None
    if after_objid is not None or rows is not None:
        if batch_path is not None or after_objid is None or rows is None:
            raise BatchError("a SkyServer window needs after_objid and rows, and no batch_path")
        window = replace(skyserver_request(settings), after_objid=after_objid, max_rows=rows)
    return run_monitoring(settings, batch_path, model_uri, window)
