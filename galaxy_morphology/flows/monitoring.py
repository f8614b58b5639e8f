"""Monitoring flow: labelled batch -> model in service -> metrics, drift, ranges -> report, run, alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from galaxy_morphology.core.links import links_for
from galaxy_morphology.core.settings import Settings, load_settings
from galaxy_morphology.flows.data import settings_path
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry, ResolvedModel
from galaxy_morphology.io.skyserver import SkyServerRequest
from galaxy_morphology.monitoring.alerts import Delivery
from galaxy_morphology.monitoring.assess import Assessment, summary_line
from galaxy_morphology.monitoring.batch import Batch, BatchError
from galaxy_morphology.monitoring.ranges import Check
from galaxy_morphology.monitoring.report import HTML_NAME, monitoring_markdown
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

DEFAULT_BATCH = (
    "data/monitoring/latest.csv"  # where a day's labelled batch is put, for Quick run and the schedule
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
    if batch_path == DEFAULT_BATCH and not Path(batch_path).exists():
        raise BatchError(
            f"no labelled batch at {DEFAULT_BATCH} (the default batch_path): put one there, or give a "
            "batch file, or a SkyServer window (after_specobjid and rows)"
        )
    return load_batch(batch_path, labels.rule, labels.threshold)


def monitoring_links(
    settings: Settings, registry: Registry, model: ResolvedModel, run_id: str, has_html: bool
) -> dict[str, str]:
    """Markdown links to the model version, the monitoring run and its Evidently report."""
    links = links_for(settings)
    found = {
        "version": links.version(model.name, str(model.version)) if model.version else f"`{model.uri}`",
        "run": links.run(run_id),
    }
    if has_html:
        experiment_id = registry.tracking.experiment_id(settings.mlflow.monitoring_experiment)
        found["html"] = links.artifact(experiment_id, run_id, f"report/{HTML_NAME}", "Evidently HTML report")
    return found


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
    links = monitoring_links(settings, registry, model, run_id, html is not None)
    create_markdown_artifact(
        key="monitoring-report",
        markdown=monitoring_markdown(judged, model, batch, str(folder), links),
        description="Monitoring checks of the model in service on a labelled batch",
    )
    location = f"{folder} (MLflow run {run_id})"
    delivery = alert_breaches(judged, model, batch.path, location, monitoring) if judged.breached else None
    run_logger().info(summary_line(judged))
    return MonitoringResult.of(judged, str(model.version), batch, run_id, str(folder), html, delivery)


@flow(name="galaxy-monitoring")
def monitoring_flow(
    batch_path: str = DEFAULT_BATCH,
    model_uri: str = "",
    settings_file: str = "",
    after_specobjid: int = -1,
    rows: int = 0,
) -> MonitoringResult:
    """Score a labelled batch with the model in service, check metrics and drift, report and alert.

    The batch is a file, or a SkyServer window of `rows` rows after `after_specobjid`. Prefect's
    Quick run (and the daily schedule, off until switched on) reads data/monitoring/latest.csv:
    put each day's labelled batch there.

    Args:
        batch_path: Labelled batch file (CSV, CSV.gz or Parquet: the catalogue columns plus the
            GZ1 flags); empty when a SkyServer window is given.
        model_uri: Model to monitor, e.g. models:/galaxy-morphology/3; empty: the in-service alias.
        settings_file: Settings YAML; empty: settings.yaml in the worker's folder (or $GALAXY_SETTINGS_FILE).
        after_specobjid: SkyServer window: rows with a specobjid above this (-1: from the first).
        rows: SkyServer window: number of rows; 0: no window (monitor batch_path).
    """
    settings = load_settings(None, settings_path(settings_file))
    window = None
    if rows or after_specobjid != -1:
        if rows <= 0 or (batch_path and batch_path != DEFAULT_BATCH):
            raise BatchError(
                "a SkyServer window needs after_specobjid and rows (rows > 0), and no batch_path"
            )
        window = SkyServerRequest.from_settings(settings).window(after_specobjid, rows)
    return run_monitoring(settings, None if window else batch_path or None, model_uri or None, window)
