"""Builders of small, valid catalogue tables with every canonical column.

Values are drawn from a seeded generator, so the same call always gives the same table.
Ellipticals are redder, rounder and more massive than spirals, so a model can tell them
apart (enough for smoke tests of training, not a benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxy_morphology.core.schema import COLUMN_NAMES

FIRST_OBJID = 1237648702966038528
Morphology = str  # "spiral", "elliptical" or "uncertain"


def galaxy_row(morphology: Morphology, objid: int, rng: np.random.Generator) -> dict[str, Any]:
    """One plausible SDSS + GZ1 row of the given morphology."""
    elliptical = morphology == "elliptical"
    mag_r = rng.uniform(14.5, 17.5)
    u_r = rng.normal(2.7 if elliptical else 1.8, 0.15)
    p_el = rng.uniform(0.85, 1.0) if elliptical else rng.uniform(0.0, 0.15)
    if morphology == "uncertain":
        p_el = rng.uniform(0.35, 0.65)
    return {
        "objid": objid,
        "ra": rng.uniform(145.0, 203.0),
        "dec": rng.uniform(-1.25, 1.25),
        "redshift": rng.uniform(0.02, 0.2),
        "mag_u": mag_r + u_r,
        "mag_g": mag_r + 0.4 * u_r,
        "mag_r": mag_r,
        "mag_i": mag_r - 0.35,
        "mag_z": mag_r - 0.6,
        "deVRad_r": rng.uniform(1.0, 8.0),
        "deVAB_r": rng.uniform(0.75, 0.98) if elliptical else rng.uniform(0.2, 0.6),
        "expRad_r": rng.uniform(1.0, 6.0),
        "expAB_r": rng.uniform(0.75, 0.98) if elliptical else rng.uniform(0.2, 0.6),
        "stellar_mass": rng.normal(11.0 if elliptical else 10.3, 0.3),
        "votes": int(rng.integers(20, 60)),
        "p_el_debiased": p_el,
        "p_cs_debiased": 1.0 - p_el,
        "spiral": int(morphology == "spiral"),
        "elliptical": int(elliptical),
        "uncertain": int(morphology == "uncertain"),
    }


def raw_frame(
    n_spiral: int = 4,
    n_elliptical: int = 4,
    n_uncertain: int = 1,
    seed: int = 0,
    first_objid: int = FIRST_OBJID,
) -> pd.DataFrame:
    """A clean raw table: spirals, then ellipticals, then uncertain rows; objids increasing."""
    rng = np.random.default_rng(seed)
    morphologies = ["spiral"] * n_spiral + ["elliptical"] * n_elliptical + ["uncertain"] * n_uncertain
    rows = [galaxy_row(kind, first_objid + number, rng) for number, kind in enumerate(morphologies)]
    return pd.DataFrame(rows, columns=list(COLUMN_NAMES))


def catalogue(n_rows: int, seed: int = 1, first_objid: int = FIRST_OBJID) -> pd.DataFrame:
    """``n_rows`` clean rows with mixed classes (2 spirals, 1 elliptical, 1 uncertain per 4)."""
    rng = np.random.default_rng(seed)
    cycle = ("spiral", "elliptical", "spiral", "uncertain")
    rows = [galaxy_row(cycle[number % 4], first_objid + number, rng) for number in range(n_rows)]
    return pd.DataFrame(rows, columns=list(COLUMN_NAMES))


def with_values(frame: pd.DataFrame, row: int, **values: Any) -> pd.DataFrame:
    """A copy of ``frame`` with some cells of one row replaced."""
    changed = frame.copy()
    for column, value in values.items():
        if changed[column].dtype.kind in "iu" and not float(value).is_integer():
            changed[column] = changed[column].astype("float64")
        changed.loc[row, column] = value
    return changed


def write_snapshot(frame: pd.DataFrame, path: Path, columns: Sequence[str] | None = None) -> Path:
    """Write ``frame`` as CSV, CSV.gz or Parquet, chosen by the suffix of ``path``."""
    table = frame if columns is None else frame[list(columns)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)
    return path


def with_profiles(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """``frame`` with SkyServer's five profile columns, ellipticals more concentrated and deV-like."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    bulge = frame["elliptical"].to_numpy() == 1
    frac_dev = np.clip(np.where(bulge, 0.85, 0.25) + rng.normal(0.0, 0.1, n), 0.0, 1.0)
    petro_r50 = rng.uniform(1.5, 5.0, n)
    ln_exp = -rng.uniform(100.0, 3000.0, n)
    return frame.assign(
        fracDeV_r=frac_dev,
        petroR50_r=petro_r50,
        petroR90_r=petro_r50 * (2.2 + frac_dev + rng.normal(0.0, 0.1, n)),
        lnLDeV_r=ln_exp + (frac_dev - 0.5) * rng.uniform(50.0, 500.0, n),
        lnLExp_r=ln_exp,
    )
