"""Monitoring tasks: the batch, the model in service, the reference, the MLflow run, alerts."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from prefect import task
from prefect.cache_policies import NO_CACHE

from galaxy_morphology.core.prepare import LABEL
from galaxy_morphology.core.schema import model_columns
from galaxy_morphology.core.settings import MonitoringSettings, Settings
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry, ResolvedModel
from galaxy_morphology.io.skyserver import SkyServerRequest
from galaxy_morphology.monitoring import alerts
from galaxy_morphology.monitoring.assess import Assessment, assess, report_document, run_metrics, run_tags
from galaxy_morphology.monitoring.batch import (
    Batch,
    prepare_batch,
    read_batch,
    reference_from_table,
    scored_frame,
)
from galaxy_morphology.monitoring.ranges import Check
from galaxy_morphology.monitoring.report import alert_text, report_folder, write_report
from galaxy_morphology.tasks.ingest import ingest_skyserver, read_snapshot

REFERENCE_ARTIFACT = "reference/reference.parquet"


@task(name="load-skyserver-batch", cache_policy=NO_CACHE)
def load_skyserver_batch(
    request: SkyServerRequest, cache_dir: Path, base_url: str | None, rule: str, threshold: float
) -> Batch:
    """A SkyServer query window (rows after a specobjid, at most ``max_rows``) as a labelled batch."""
    fetched = ingest_skyserver(request, cache_dir, base_url)
    name = f"skyserver:DR{request.release}:specobjid>{request.after_specobjid}:rows<={request.max_rows}"
    batch = prepare_batch(fetched.table, name, rule, threshold)
    run_logger().info("batch %s: %s, per class %s", name, batch.counts, batch.per_class)
    return batch


@task(name="load-batch", cache_policy=NO_CACHE)
def load_batch(path: str, rule: str, threshold: float) -> Batch:
    """Read, validate, clean and label the batch; ``BatchError`` names the problem."""
    batch = prepare_batch(read_batch(path), path, rule, threshold)
    run_logger().info("batch %s: %s, per class %s", path, batch.counts, batch.per_class)
    return batch


@task(name="resolve-model", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def resolve_model(registry: Registry, model_uri: str | None) -> ResolvedModel:
    """The model to monitor: ``model_uri``, or the in-service alias, pinned to its version."""
    return registry.resolve(model_uri)


@task(name="score-batch", cache_policy=NO_CACHE)
def score(
    registry: Registry, model: ResolvedModel, frames: dict[str, pd.DataFrame | None]
) -> dict[str, pd.DataFrame | None]:
    """Score each frame with the model loaded once: features, label, prediction, p_elliptical."""
    loaded = registry.load(model)
    return {
        name: None if frame is None or frame.empty else scored_frame(frame, loaded.score(frame))
        for name, frame in frames.items()
    }


@task(name="load-reference", retries=1, cache_policy=NO_CACHE)
def load_reference(
    registry: Registry, model: ResolvedModel, settings: Settings
) -> tuple[pd.DataFrame | None, str]:
    """The model's training rows: its run's reference artifact, else re-derived from its source."""
    log = run_logger()
    source_tag = None
    if model.run_id:
        try:
            with tempfile.TemporaryDirectory() as folder:
                local = mlflow.artifacts.download_artifacts(
                    run_id=model.run_id,
                    artifact_path=REFERENCE_ARTIFACT,
                    dst_path=folder,
                    tracking_uri=registry.tracking.uri,
                )
                frame = pd.read_parquet(local)
            log.info("reference: %d rows from run %s artifact", len(frame), model.run_id)
            reference = frame[[*model_columns(frame.columns), LABEL]]
            return reference, f"runs:/{model.run_id}/{REFERENCE_ARTIFACT}"
        except (MlflowException, OSError) as error:
            log.info("run %s has no %s (%s); re-deriving", model.run_id, REFERENCE_ARTIFACT, error)
        try:
            source_tag = registry.tracking.run_tags(model.run_id).get("galaxy.data.source")
        except MlflowException:
            source_tag = None
    candidates: list[Path] = []
    if source_tag and source_tag.startswith("snapshot:"):
        candidates.append(Path(source_tag.removeprefix("snapshot:")))
    if settings.data.source == "snapshot":
        candidates.append(Path(settings.data.snapshot_path))
    for path in candidates:
        if path.exists():
            frame = reference_from_table(
                read_snapshot(path), settings.labels.rule, settings.labels.threshold, settings.split
            )
            log.info("reference: %d train+validation rows re-derived from %s", len(frame), path)
            return frame, f"snapshot:{path.resolve()}"
    log.warning("no training reference found (run artifact or snapshot): drift is not computed")
    return None, "none"


@task(name="log-monitoring-run", cache_policy=NO_CACHE)
def log_monitoring_run(
    registry: Registry,
    experiment: str,
    model: ResolvedModel,
    batch: Batch,
    assessment: Assessment,
    report_folder: Path,
) -> str:
    """One finished run per batch in the monitoring experiment: metrics, tags, report artifacts."""
    tracking = registry.tracking
    tags = {
        "galaxy.flow": "monitoring",
        "galaxy.model.name": model.name,
        "galaxy.model.version": str(model.version),
        "galaxy.model.uri": model.requested,
        "galaxy.batch.digest": batch.digest,
        "galaxy.batch.path": str(batch.path),
        **run_tags(assessment, str(report_folder)),
    }
    with tracking.run(experiment, f"monitor-{batch.digest[:8]}-v{model.version}", tags) as run_id:
        tracking.log_params(run_id, {f"rows.{key}": value for key, value in batch.counts.items()})
        tracking.log_metrics(run_id, run_metrics(assessment))
        tracking.log_folder(run_id, Path(report_folder), "report")
    return run_id


@task(name="emit-breach-events", cache_policy=NO_CACHE)
def emit_breach_events(breached: list[Check], model: ResolvedModel, report_location: str) -> int:
    """One ``galaxy.monitoring.breach`` event per breached metric (never retried: no duplicates)."""
    emitted = alerts.emit_breaches(breached, model.name, str(model.version), report_location)
    run_logger().info("emitted %d %s event(s)", emitted, alerts.BREACH_EVENT)
    return emitted


@task(
    name="send-breach-notification",
    retries=2,
    retry_delay_seconds=5,
    cache_policy=NO_CACHE,
    retry_condition_fn=lambda task, run, state: isinstance(state.data, httpx.HTTPError),
)
def notify(
    breached: list[Check],
    model: ResolvedModel,
    batch_path: str,
    report_location: str,
    block_name: str | None,
    webhook_env: str,
) -> alerts.Delivery:
    """ONE notification naming every breach; retried only when the webhook could not take it."""
    version = str(model.version)
    subject, body = alert_text(breached, model.name, version, batch_path, report_location)
    payload = {
        "model": model.name,
        "model_version": version,
        "batch": batch_path,
        "report": report_location,
        "breaches": [json.loads(json.dumps(check.as_dict())) for check in breached],
    }
    return alerts.send_notification(subject, body, payload, block_name, webhook_env, run_logger())


@task(name="assess-batch", cache_policy=NO_CACHE)
def assess_batch(
    batch: Batch, scored: dict[str, pd.DataFrame | None], reference_source: str, settings: MonitoringSettings
) -> Assessment:
    if not batch.has_labels:
        run_logger().warning("batch has no labelled rows: judged by its agreement with the volunteers")
    elif any(count == 0 for count in batch.per_class.values()):
        run_logger().warning("batch holds a single class: no Evidently report")
    return assess(
        batch, scored["current"], scored["reference"], reference_source, settings, scored.get("unlabelled")
    )


@task(name="write-report", cache_policy=NO_CACHE)
def write_monitoring_report(
    reports_dir: Path, assessment: Assessment, model: ResolvedModel, batch: Batch
) -> tuple[Path, str | None]:
    """The report folder (Evidently HTML and JSON, values.json) and the HTML's path."""
    folder = report_folder(reports_dir, batch.digest)
    model_info = {"uri": model.requested, "name": model.name, "version": model.version}
    written = write_report(folder, assessment.snapshot, report_document(assessment, model_info, batch))
    return folder.resolve(), str(written["html"].resolve()) if "html" in written else None


def alert_breaches(
    assessment: Assessment, model: ResolvedModel, batch_path: str, location: str, settings: MonitoringSettings
) -> alerts.Delivery:
    """Breach events once, then one notification; a channel that keeps failing is reported, not raised."""
    emit_breach_events(assessment.breached, model, location)
    try:
        return notify(
            assessment.breached,
            model,
            batch_path,
            location,
            settings.notification_block,
            settings.webhook_url_env,
        )
    except httpx.HTTPError as error:
        run_logger().error("breach notification NOT delivered: %s", error)
        return alerts.Delivery(f"webhook:{settings.webhook_url_env}", False, f"not delivered: {error}")
