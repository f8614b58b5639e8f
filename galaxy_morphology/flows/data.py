"""Data flow: ingest -> validate -> clean -> label -> split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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


# a flow parameter's "settings" (or an empty text, or 0) leaves the value in settings.yaml
Source = Literal["settings", "snapshot", "skyserver"]


def data_overrides(source: Source, snapshot: str) -> dict[str, Any]:
    """Settings overrides from the flows' data parameters (None: keep the settings' value)."""
    return {"data": {"source": None if source == "settings" else source, "snapshot_path": snapshot or None}}


def settings_path(settings_file: str) -> Path | None:
    return Path(settings_file) if settings_file else None


@flow(name="galaxy-data")
def data_flow(
    source: Source = "settings",
    snapshot: str = "",
    settings_file: str = "",
    max_rows: int = 0,
    export_dir: str = "",
) -> PreparedData:
    """Ingest the GZ1 table and hand back a clean, labelled, split table; rows per step and per
    drop reason are logged and published as artifacts.

    Prefect's Quick run reads the source named in settings.yaml (the shared snapshot by default).

    Args:
        source: Where the rows come from: `settings` (data.source in settings.yaml), the
            `snapshot` file, or SDSS `skyserver` (paged, cached queries).
        snapshot: Snapshot file (CSV, CSV.gz or Parquet) for source snapshot; empty: data.snapshot_path.
        settings_file: Settings YAML; empty: settings.yaml in the worker's folder (or $GALAXY_SETTINGS_FILE).
        max_rows: SkyServer only: fetch the first N rows (a quick try); 0: every row.
        export_dir: Also write labelled, unlabelled, train, validation and test CSV files to this
            folder (a labelled batch to monitor); empty: data.export_dir (none: write nothing).
    """
    overrides = {**data_overrides(source, snapshot), "skyserver": {"max_rows": max_rows or None}}
    overrides["data"]["export_dir"] = export_dir or None
    return prepare_data(load_settings(overrides, settings_path(settings_file)))
