"""Monitoring flow: labelled batch -> model in service -> metrics, drift, ranges -> report, run, alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from galaxy_morphology.core.settings import Settings, load_settings
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry
from galaxy_morphology.io.skyserver import SkyServerRequest
from galaxy_morphology.monitoring.alerts import Delivery
from galaxy_morphology.monitoring.assess import Assessment, summary_line
from galaxy_morphology.monitoring.batch import Batch, BatchError
from galaxy_morphology.monitoring.ranges import Check
from galaxy_morphology.monitoring.report import monitoring_markdown
from galaxy_morphology.tasks.monitor import (
    alert_breaches,
    assess_batch,
    load_batch,
    load_reference,
    load_skyserver_batch,
    log_monitoring_run,
    resolve_model,
    score,
    write_monitoring_report,
)


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
        return [check for check in self.checks if check.breached]

    @classmethod
    def of(
        cls,
        judged: Assessment,
        model_version: str,
        batch: Batch,
        run_id: str,
        report_dir: str,
        html: str | None,
        delivery: Delivery | None,
    ) -> MonitoringResult:
        return cls(
            status=judged.status,
            checks=judged.checks,
            values=judged.values,
            model_version=model_version,
            batch_digest=batch.digest,
            run_id=run_id,
            report_dir=report_dir,
            html=html,
            delivery=delivery,
            insufficient=judged.insufficient,
            reference=judged.reference,
            counts=batch.counts,
        )


def _load(settings: Settings, batch_path: str | None, window: SkyServerRequest | None) -> Batch:
    labels = settings.labels
    if window is not None:
        return load_skyserver_batch(
            window, settings.data.cache_dir, settings.skyserver.base_url, labels.rule, labels.threshold
        )
    if batch_path is None:
        raise BatchError("give a batch file, or a SkyServer window (after_specobjid and rows)")
    return load_batch(batch_path, labels.rule, labels.threshold)


def run_monitoring(
    settings: Settings,
    batch_path: str | None,
    model_uri: str | None = None,
    window: SkyServerRequest | None = None,
) -> MonitoringResult:
    """The monitoring steps on loaded settings. Nothing is recorded when the batch is unusable."""
    registry, monitoring = Registry.from_settings(settings), settings.monitoring
    batch = _load(settings, batch_path, window)
    model = resolve_model(registry, model_uri)
    reference, reference_source = load_reference(registry, model, settings)
    frames = {"current": batch.labelled, "reference": reference, "unlabelled": batch.unlabelled}
    scored = score(registry, model, frames)
    judged: Assessment = assess_batch(batch, scored, reference_source, monitoring)
    folder, html = write_monitoring_report(monitoring.reports_dir, judged, model, batch)
    run_id = log_monitoring_run(registry, settings.mlflow.monitoring_experiment, model, batch, judged, folder)
    create_markdown_artifact(
        key="monitoring-report",
        markdown=monitoring_markdown(judged, model, batch, str(folder), html, run_id),
        description="Monitoring checks of the model in service on a labelled batch",
    )
    location = f"{folder} (MLflow run {run_id})"
    delivery = alert_breaches(judged, model, batch.path, location, monitoring) if judged.breached else None
    run_logger().info(summary_line(judged))
    return MonitoringResult.of(judged, str(model.version), batch, run_id, str(folder), html, delivery)


@flow(name="galaxy-monitoring")
def monitoring_flow(
    batch_path: str | None = None,
    model_uri: str | None = None,
    settings_file: str | None = None,
    after_specobjid: int | None = None,
    rows: int | None = None,
) -> MonitoringResult:
    """Score a labelled batch (a file, or a SkyServer window of ``rows`` rows after
    ``after_specobjid``) with the model in service, check metrics and drift, report and alert."""
    settings = load_settings(None, Path(settings_file) if settings_file else None)
    window = None
    if after_specobjid is not None or rows is not None:
        if batch_path is not None or after_specobjid is None or rows is None:
            raise BatchError("a SkyServer window needs after_specobjid and rows, and no batch_path")
        window = SkyServerRequest.from_settings(settings).window(after_specobjid, rows)
    return run_monitoring(settings, batch_path, model_uri, window)
