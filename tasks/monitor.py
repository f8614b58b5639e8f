"""Prefect tasks of the monitoring flow: batch, champion, reference, report, MLflow run, alerts."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from galaxy.gate import CHAMPION
from galaxy.prepare import LABEL
from galaxy.schema import FEATURE_COLUMNS
from galaxy.settings import Settings
from monitoring import alerts
from monitoring.metrics import Batch, prepare_batch, read_batch, reference_from_table, scored_frame
from monitoring.ranges import Check
from tasks.ingest import SkyServerRequest, astroquery_fetch, fetch_skyserver, read_snapshot
from tasks.tracking import client, ensure_experiment

REFERENCE_ARTIFACT = "reference/reference.parquet"


class MonitoringError(RuntimeError):
    """Monitoring cannot run (no champion, model not loadable); nothing was recorded."""


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:  # outside a flow or task run (plain function calls in tests)
        return logging.getLogger("galaxy.monitoring")


@dataclass(frozen=True)
class Champion:
    uri: str
    name: str
    version: str
    run_id: str | None


@task(name="load-skyserver-batch", cache_policy=NO_CACHE)
def load_skyserver_batch(
    request: SkyServerRequest, cache_dir: Path, base_url: str | None, rule: str, threshold: float
) -> Batch:
    """A SkyServer query window (rows after an objid, at most ``max_rows``) as a labelled batch."""
    fetch = astroquery_fetch(request.release, request.timeout_seconds, base_url)
    raw, _ = fetch_skyserver(request, cache_dir, fetch)
    name = f"skyserver:DR{request.release}:objid>{request.after_objid}:rows<={request.max_rows}"
    batch = prepare_batch(raw, name, rule, threshold)
    _logger().info("batch %s: %s, per class %s", name, batch.counts, batch.per_class)
    return batch


@task(name="load-batch", cache_policy=NO_CACHE)
def load_batch(path: str, rule: str, threshold: float) -> Batch:
    """Read, validate, clean and label the batch; ``BatchError`` names the problem."""
    batch = prepare_batch(read_batch(path), path, rule, threshold)
    _logger().info("batch %s: %s, per class %s", path, batch.counts, batch.per_class)
    return batch


def resolve_model(tracking_uri: str, model_name: str, model_uri: str | None) -> Champion:
    """The model to monitor: ``model_uri`` or ``models:/<name>@champion``, with version and run."""
    tracking = client(tracking_uri)
    uri = model_uri or f"models:/{model_name}@{CHAMPION}"
    try:
        if uri.startswith("models:/"):
            target = uri.removeprefix("models:/")
            if "@" in target:
                name, alias = target.split("@", 1)
                version = tracking.get_model_version_by_alias(name, alias)
            else:
                name, number = target.split("/", 1)
                version = tracking.get_model_version(name, number)
            return Champion(uri, name, str(version.version), version.run_id)
    except MlflowException as error:
        raise MonitoringError(
            f"model {uri} not found in the registry at {tracking_uri}: {error.message}"
        ) from None
    run_id = uri.removeprefix("runs:/").split("/", 1)[0] if uri.startswith("runs:/") else None
    return Champion(uri, model_name, "unknown", run_id)


resolve_model_task = task(name="resolve-model", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)(
    resolve_model
)


@task(name="score-batch", cache_policy=NO_CACHE)
def score(model_uri: str, frames: dict[str, pd.DataFrame | None]) -> dict[str, pd.DataFrame | None]:
    """Score each frame with the pyfunc; returns features, label, prediction and p_elliptical."""
    model = mlflow.pyfunc.load_model(model_uri)
    scored: dict[str, pd.DataFrame | None] = {}
    for name, frame in frames.items():
        if frame is None:
            scored[name] = None
            continue
        predictions = model.predict(frame[list(FEATURE_COLUMNS)].astype("float64"))
        scored[name] = scored_frame(frame, predictions)
    return scored


@task(name="load-reference", retries=1, cache_policy=NO_CACHE)
def load_reference(
    tracking_uri: str, champion: Champion, settings: Settings
) -> tuple[pd.DataFrame | None, str]:
    """The champion's training rows: its run's reference artifact, else re-derived from its source."""
    log = _logger()
    tracking = client(tracking_uri)
    source_tag = None
    if champion.run_id:
        try:
            with tempfile.TemporaryDirectory() as folder:
                local = mlflow.artifacts.download_artifacts(
                    run_id=champion.run_id,
                    artifact_path=REFERENCE_ARTIFACT,
                    dst_path=folder,
                    tracking_uri=tracking_uri,
                )
                frame = pd.read_parquet(local)
            log.info("reference: %d rows from run %s artifact", len(frame), champion.run_id)
            return frame[[*FEATURE_COLUMNS, LABEL]], f"runs:/{champion.run_id}/{REFERENCE_ARTIFACT}"
        except (MlflowException, OSError) as error:
            log.info("run %s has no %s (%s); re-deriving", champion.run_id, REFERENCE_ARTIFACT, error)
        try:
            source_tag = tracking.get_run(champion.run_id).data.tags.get("galaxy.data.source")
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


@task(name="log-monitoring-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_monitoring_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    champion: Champion,
    batch: Batch,
    metrics: dict[str, float],
    tags: dict[str, str],
    report_folder: Path,
) -> str:
    """One finished run per batch in the monitoring experiment: metrics, tags, report artifacts."""
    tracking = client(tracking_uri)
    experiment_id = ensure_experiment(tracking, experiment, artifact_root)
    run = tracking.create_run(
        experiment_id,
        run_name=f"monitor-{batch.digest[:8]}-v{champion.version}",
        tags={
            "galaxy.flow": "monitoring",
            "galaxy.model.name": champion.name,
            "galaxy.model.version": champion.version,
            "galaxy.model.uri": champion.uri,
            "galaxy.batch.digest": batch.digest,
            "galaxy.batch.path": str(batch.path),
            **tags,
        },
    )
    run_id = run.info.run_id
    try:
        for key, value in batch.counts.items():
            tracking.log_param(run_id, f"rows.{key}", value)
        tracking.log_batch(
            run_id,
            metrics=[
                mlflow.entities.Metric(key, value, int(run.info.start_time), 0)
                for key, value in metrics.items()
            ],
        )
        for path in sorted(Path(report_folder).iterdir()):
            tracking.log_artifact(run_id, str(path), artifact_path="report")
    except BaseException:
        tracking.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    tracking.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


@task(name="alert-breaches", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def alert(
    breached: list[Check],
    champion: Champion,
    batch_path: str,
    report_location: str,
    block_name: str | None,
    webhook_env: str,
) -> alerts.Delivery:
    """Emit one breach event per metric, then send ONE notification naming every breach."""
    from monitoring.report import alert_text

    log = _logger()
    emitted = alerts.emit_breaches(breached, champion.name, champion.version, report_location)
    log.info("emitted %d %s event(s)", emitted, alerts.BREACH_EVENT)
    subject, body = alert_text(breached, champion.name, champion.version, batch_path, report_location)
    payload = {
        "model": champion.name,
        "model_version": champion.version,
        "batch": batch_path,
        "report": report_location,
        "breaches": [json.loads(json.dumps(check.as_dict())) for check in breached],
    }
    return alerts.send_notification(subject, body, payload, block_name, webhook_env, log)
