"""Data flow: ingest -> validate -> clean -> label -> split."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger

from galaxy.prepare import PreparedData, digest, step_counts
from galaxy.settings import Settings, load_settings
from tasks.ingest import SkyServerRequest, ingest_skyserver, ingest_snapshot
from tasks.prepare import clean, label, split, validate


def skyserver_request(settings: Settings) -> SkyServerRequest:
    sky = settings.skyserver
    return SkyServerRequest(
        release=sky.release,
        page_size=sky.page_size,
        max_rows=sky.max_rows,
        timeout_seconds=sky.timeout_seconds,
        retries=sky.retries,
        backoff_seconds=sky.backoff_seconds,
    )


def prepare_data(settings: Settings) -> PreparedData:
    """The data steps, callable from any flow."""
    log = get_run_logger()
    data = settings.data
    if data.source == "snapshot":
        source = f"snapshot:{Path(data.snapshot_path).resolve()}"
        raw = ingest_snapshot(data.snapshot_path)
    else:
        source = f"skyserver:DR{settings.skyserver.release}"
        raw = ingest_skyserver(skyserver_request(settings), data.cache_dir, settings.skyserver.base_url)
    log.info("source %s: %d raw rows", source, len(raw))
    table = validate(raw)
    kept, dropped = clean(table)
    log.info("cleaning kept %d rows, dropped %d: %s", len(kept), sum(dropped.values()), dropped)
    labelled, unlabelled = label(kept, settings.labels.rule, settings.labels.threshold)
    log.info("labels: %d labelled, %d unlabelled", len(labelled), len(unlabelled))
    fractions = settings.split
    parts = split(labelled, fractions.train, fractions.validation, fractions.test, fractions.seed)
    log.info("split: %s", parts.sizes)
    counts = {
        **step_counts(len(raw), kept, dropped, labelled, unlabelled),
        **{f"labelled_{name}": int(n) for name, n in labelled["label"].value_counts().items()},
        **parts.sizes,
    }
    return PreparedData(
        source=source,
        counts=counts,
        dropped=dropped,
        split=parts,
        unlabelled=unlabelled,
        digest=digest(labelled),
    )


@flow(name="galaxy-data")
def data_flow(
    source: Literal["snapshot", "skyserver"] | None = None,
    snapshot: str | None = None,
    settings_file: str | None = None,
) -> PreparedData:
    """Ingest the GZ1 table and hand back a clean, labelled, split table."""
    settings = load_settings(
        {"data": {"source": source, "snapshot_path": snapshot}},
        Path(settings_file) if settings_file else None,
    )
    return prepare_data(settings)
