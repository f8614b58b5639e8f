"""Validate, clean, label and split the raw table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from galaxy_morphology.core import prepare
from galaxy_morphology.core.prepare import DROP_REASONS, Split
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.tables import atomic_paths


@task(name="validate", cache_policy=NO_CACHE)
def validate(raw: pd.DataFrame) -> pd.DataFrame:
    """Required columns and numeric types; stops with the offending column named."""
    return prepare.validate_raw(raw)


@task(name="clean", cache_policy=NO_CACHE)
def clean(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    kept, dropped = prepare.clean(table)
    total = sum(dropped.values())
    rows = [{"reason": reason, "rows dropped": dropped[reason]} for reason in DROP_REASONS]
    rows.append({"reason": "total", "rows dropped": total})
    create_table_artifact(
        key="cleaning-drops",
        table=rows,
        description=f"Cleaning kept {len(kept)} of {len(table)} rows; rows dropped per reason "
        "(a row counts under the first reason that applies)",
    )
    return kept, dropped


@task(name="label", cache_policy=NO_CACHE)
def label(table: pd.DataFrame, rule: str, threshold: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    return prepare.label(table, rule, threshold)


@task(name="split", cache_policy=NO_CACHE)
def split(labelled: pd.DataFrame, train: float, validation: float, test: float, seed: int) -> Split:
    return prepare.split(labelled, train, validation, test, seed)


@task(name="export-tables", cache_policy=NO_CACHE)
def export(labelled: pd.DataFrame, unlabelled: pd.DataFrame, parts: Split, folder: Path) -> dict[str, int]:
    """Write the labelled and unlabelled rows and each split as CSV files in ``folder``.

    All files appear together or none does (a failure leaves the folder as it was).
    """
    tables = prepare.export_tables(labelled, unlabelled, parts)
    paths = {stem: Path(folder) / f"{stem}.csv" for stem in tables}
    Path(folder).mkdir(parents=True, exist_ok=True)
    with atomic_paths(*paths.values()) as temporaries:
        for frame, temporary in zip(tables.values(), temporaries, strict=True):
            frame.to_csv(temporary, index=False)
    written = {str(path): len(tables[stem]) for stem, path in paths.items()}
    run_logger().info("wrote %s", ", ".join(f"{path} ({rows} rows)" for path, rows in written.items()))
    return written
