"""Validate, clean, label and split the raw table."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from galaxy_morphology.core import prepare
from galaxy_morphology.core.prepare import DROP_REASONS, Split


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
