"""Data flow: ingest -> validate -> clean -> label -> split."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from prefect import flow

from galaxy_morphology.core.prepare import PreparedData, digest, prepared_counts
from galaxy_morphology.core.settings import Settings, load_settings
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.skyserver import SkyServerRequest
from galaxy_morphology.tasks.ingest import ingest_skyserver, ingest_snapshot
from galaxy_morphology.tasks.prepare import clean, export, label, split, validate


def prepare_data(settings: Settings) -> PreparedData:
    """The data steps, callable from any flow."""
    log, data, fractions = run_logger(), settings.data, settings.split
    stages: dict[str, int] = {}
    if data.source == "snapshot":
        source = f"snapshot:{Path(data.snapshot_path).resolve()}"
        raw: pd.DataFrame = ingest_snapshot(data.snapshot_path)
    else:
        request = SkyServerRequest.from_settings(settings)
        source = request.source()
        fetched = ingest_skyserver(request, data.cache_dir, settings.skyserver.base_url)
        raw, stages = fetched.table, fetched.stages
    log.info("source %s: %d raw rows", source, len(raw))
    kept, dropped = clean(validate(raw))
    labelled, unlabelled = label(kept, settings.labels.rule, settings.labels.threshold)
    parts = split(labelled, fractions.train, fractions.validation, fractions.test, fractions.seed)
    exported = export(labelled, unlabelled, parts, data.export_dir) if data.export_dir is not None else {}
    counts = prepared_counts(len(raw), kept, dropped, labelled, unlabelled, parts, stages)
    log.info("rows: %s", counts)
    return PreparedData(source, counts, dropped, parts, unlabelled, digest(labelled), exported)


@flow(name="galaxy-data")
def data_flow(
    source: Literal["snapshot", "skyserver"] | None = None,
    snapshot: str | None = None,
    settings_file: str | None = None,
    max_rows: int | None = None,
    export_dir: str | None = None,
) -> PreparedData:
    """Ingest the GZ1 table and hand back a clean, labelled, split table.

    With ``export_dir`` (or ``data.export_dir``), the labelled and unlabelled rows and each
    split are also written there as CSV files.
    """
    settings = load_settings(
        {
            "data": {"source": source, "snapshot_path": snapshot, "export_dir": export_dir},
            "skyserver": {"max_rows": max_rows},
        },
        Path(settings_file) if settings_file else None,
    )
    return prepare_data(settings)
