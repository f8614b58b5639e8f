"""SkyServer's tables, small or large, for the stand-in: zooSpec, PhotoObjAll, SpecObjAll, galSpecExtra.

``build_tables(n)`` makes ``n`` zooSpec rows (seeded) by resampling real GZ1 + SDSS rows with a
small jitter: the shared snapshot when it exists (read at run time, never copied), else the
synthetic ``tests.factories.catalogue``. The photometry, spectra and stellar masses land in the
tables SkyServer keeps them in, with SkyServer's keys and the quirks a real ingest meets
(``Quirks``): two zooSpec rows sharing one objid, spectra that are not sciencePrimary, mode-3
photometry, -9999 stellar masses, missing rows in PhotoObjAll, SpecObjAll and galSpecExtra.

Such data measures paging, counting and speed, never model quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tests.factories import catalogue

SHARED_SNAPSHOT = Path(__file__).resolve().parents[1].parent / "shared/data/gz1_sdss_dr9_curtin_3976.csv.gz"

# DR8 objID = skyVersion 2 << 59 | rerun 301 << 48 | run << 32 | camcol << 29 | field << 16 | obj
DR8_OBJID_BASE = (2 << 59) | (301 << 48) | (756 << 32)
DR7_OBJID_BASE = 587722981741363200
SENTINEL = -9999.0

MAGNITUDES = ("u", "g", "r", "i", "z")
JITTERED = ("redshift", "deVRad_r", "deVAB_r", "expRad_r", "expAB_r", "stellar_mass")


@dataclass(frozen=True)
class Quirks:
    """Fractions of zooSpec rows with each quirk (at least one each once there are 50 rows)."""

    duplicate_objid: float = 0.0032  # a second zooSpec row for the same objid (2,137 pairs in DR17)
    not_science_primary: float = 0.01  # the GZ1 spectrum is not the sciencePrimary one
    no_spectrum: float = 0.0005  # no SpecObjAll row (foreign keys are created WITH NOCHECK)
    mode_3: float = 0.005  # photometry of mode 3 (neither primary nor secondary)
    no_photometry: float = 0.0005  # no PhotoObjAll row
    mass_sentinel: float = 0.01  # galSpecExtra.lgm_tot_p50 = -9999
    no_galspec: float = 0.01  # no galSpecExtra row


NO_QUIRKS = Quirks(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SkyServerTables:
    """The four base tables, column names as in SkyServer (the views are made by the stand-in)."""

    zoo_spec: pd.DataFrame
    photo_obj_all: pd.DataFrame
    spec_obj_all: pd.DataFrame
    gal_spec_extra: pd.DataFrame


def source_rows() -> pd.DataFrame:
    """The rows to resample: the shared snapshot if present, else 2,000 synthetic rows."""
    if SHARED_SNAPSHOT.exists():
        frame = pd.read_csv(SHARED_SNAPSHOT)
        return frame.rename(columns={"id": "objid", "z": "redshift", "nvote": "votes"})
    return catalogue(2000, seed=3)


def _jitter(values: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Multiply by 1 + N(0, scale), leaving NaN, 0 and the -9999 sentinel as they are."""
    noisy = values * (1.0 + rng.normal(0.0, scale, len(values)))
    keep = np.isnan(values) | (values == 0.0) | (values == SENTINEL)
    return np.where(keep, values, noisy)


def _spec_obj_ids(count: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct DR8 specObjIDs of SDSS-I/II plates: plate << 50 | fiber << 38 | (mjd-50000) << 24."""
    slots = rng.choice(2709 * 640, size=count, replace=False)
    plate = 266 + slots // 640
    fiber = 1 + slots % 640
    mjd = 51578 + (plate - 266)  # one plausible MJD per plate
    return (plate << 50) | (fiber << 38) | ((mjd - 50000) << 24) | (26 << 10)


def _pick(rng: np.random.Generator, pool: np.ndarray, fraction: float, n: int) -> np.ndarray:
    count = round(fraction * n)
    if fraction > 0 and n >= 50:
        count = max(1, count)
    return rng.choice(pool, size=min(count, len(pool)), replace=False)


def _profiles(frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """fracDeV, Petrosian radii and fit likelihoods that follow the galaxy's GZ1 elliptical fraction."""
    n = len(frame)
    p_el = frame["p_el_debiased"].to_numpy(float)
    frac_dev = np.clip(p_el + rng.normal(0.1, 0.2, n), 0.0, 1.0)
    radius = _filled(frame["deVRad_r"])
    measured = radius > 0
    r50 = np.where(measured, radius * rng.uniform(0.55, 0.9, n) + 0.3, SENTINEL)
    concentration = 2.1 + 1.0 * frac_dev + rng.normal(0.0, 0.15, n)
    ln_exp = -rng.gamma(2.0, 400.0, n)
    ln_dev = ln_exp + (frac_dev - 0.5) * rng.gamma(2.0, 300.0, n)
    return {
        "fracDeV_r": frac_dev,
        "petroR50_r": r50,
        "petroR90_r": np.where(measured, r50 * concentration, SENTINEL),
        "lnLDeV_r": ln_dev,
        "lnLExp_r": ln_exp,
    }


def _filled(values: pd.Series | np.ndarray) -> np.ndarray:
    """SkyServer's photometric and spectroscopic columns are NOT NULL: -9999 marks a missing value."""
    array = np.asarray(values, dtype=float)
    return np.where(np.isnan(array), SENTINEL, array)


def build_tables(
    n_rows: int, seed: int = 0, quirks: Quirks = Quirks(), source: pd.DataFrame | None = None
) -> SkyServerTables:
    """``n_rows`` zooSpec rows resampled (with jitter) from ``source`` (default ``source_rows()``)."""
    rng = np.random.default_rng(seed)
    base = source_rows() if source is None else source
    rows = base.iloc[rng.integers(0, len(base), n_rows)].reset_index(drop=True)
    for column in JITTERED:
        rows[column] = _jitter(rows[column].to_numpy(float), rng, 0.01)
    rows["ra"] = rng.uniform(0.0, 360.0, n_rows)
    rows["dec"] = np.degrees(np.arcsin(rng.uniform(-0.2, 0.95, n_rows)))

    specobjid = _spec_obj_ids(n_rows, rng)
    objid = DR8_OBJID_BASE + rng.permutation(n_rows).astype(np.int64) * 64 + rng.integers(0, 64, n_rows)
    every = np.arange(n_rows)
    pairs = _pick(rng, every, 2 * quirks.duplicate_objid, n_rows)
    pairs = pairs[: len(pairs) // 2 * 2].reshape(-1, 2)
    objid[pairs[:, 1]] = objid[pairs[:, 0]]  # the second GZ1 row of one DR8 object
    return _tables(rows, specobjid, objid, quirks, rng)


def _tables(
    rows: pd.DataFrame,
    specobjid: np.ndarray,
    objid: np.ndarray,
    quirks: Quirks,
    rng: np.random.Generator,
) -> SkyServerTables:
    n = len(rows)
    every = np.arange(n)
    p_el = rows["p_el_debiased"].to_numpy(float)
    p_cs = rows["p_cs_debiased"].to_numpy(float)
    zoo_spec = pd.DataFrame(
        {
            "specobjid": specobjid.astype(np.int64),
            "objid": objid.astype(np.int64),
            "dr7objid": DR7_OBJID_BASE + every.astype(np.int64) * 7,
            "ra": rows["ra"].to_numpy(float),
            "dec": rows["dec"].to_numpy(float),
            "nvote": rows["votes"].fillna(0).to_numpy(np.int64),
            "p_el": p_el,
            "p_cs": p_cs,
            "p_el_debiased": p_el,
            "p_cs_debiased": p_cs,
            "spiral": rows["spiral"].to_numpy(np.int64),
            "elliptical": rows["elliptical"].to_numpy(np.int64),
            "uncertain": rows["uncertain"].to_numpy(np.int64),
        }
    )

    # PhotoObjAll: one row per DR8 object (the first zooSpec row of a shared objid gives its values)
    first = ~pd.Series(objid).duplicated().to_numpy()
    photo_rows = every[first]
    no_photometry = _pick(rng, photo_rows, quirks.no_photometry, n)
    photo_rows = np.setdiff1d(photo_rows, no_photometry, assume_unique=True)
    mode = np.where(rng.random(len(photo_rows)) < 0.02, 2, 1)
    mode[np.isin(photo_rows, _pick(rng, photo_rows, quirks.mode_3, n))] = 3
    source = rows.iloc[photo_rows]
    profiles = _profiles(source, rng)
    photo_obj_all = pd.DataFrame(
        {
            "objID": objid[photo_rows].astype(np.int64),
            "mode": mode.astype(np.int64),
            "type": np.full(len(photo_rows), 3, dtype=np.int64),
            "ra": source["ra"].to_numpy(float),
            "dec": source["dec"].to_numpy(float),
            **{f"dered_{band}": _filled(source[f"mag_{band}"]) for band in MAGNITUDES},
            **{name: _filled(source[name]) for name in ("deVRad_r", "deVAB_r", "expRad_r", "expAB_r")},
            **profiles,
            "specObjID": specobjid[photo_rows].astype(np.int64),
        }
    )

    # SpecObjAll: the GZ1 spectra, and a sciencePrimary twin for each one that is not primary
    spec_rows = np.setdiff1d(every, _pick(rng, every, quirks.no_spectrum, n), assume_unique=True)
    not_primary = _pick(rng, spec_rows, quirks.not_science_primary, n)
    twins = specobjid[not_primary] + (1 << 24)  # the same plate and fiber, a later MJD
    spec_ids = np.concatenate([specobjid[spec_rows], twins])
    redshift = _filled(rows["redshift"])
    spec_obj_all = pd.DataFrame(
        {
            "specObjID": spec_ids.astype(np.int64),
            "bestObjID": np.concatenate([objid[spec_rows], objid[not_primary]]).astype(np.int64),
            "sciencePrimary": np.concatenate(
                [(~np.isin(spec_rows, not_primary)).astype(np.int64), np.ones(len(twins), np.int64)]
            ),
            "z": np.concatenate([redshift[spec_rows], redshift[not_primary]]),
            "zWarning": np.zeros(len(spec_ids), dtype=np.int64),
            "class": np.full(len(spec_ids), "GALAXY"),
        }
    )

    # galSpecExtra: the GZ1 spectra's stellar masses, some -9999, some rows missing
    mass_rows = np.setdiff1d(spec_rows, _pick(rng, spec_rows, quirks.no_galspec, n), assume_unique=True)
    mass = _filled(rows["stellar_mass"].to_numpy(float)[mass_rows])
    mass[np.isin(mass_rows, _pick(rng, mass_rows, quirks.mass_sentinel, n))] = SENTINEL
    gal_spec_extra = pd.DataFrame(
        {
            "specObjID": specobjid[mass_rows].astype(np.int64),
            "bptclass": np.full(len(mass_rows), -1, dtype=np.int64),
            "lgm_tot_p50": mass,
        }
    )
    return SkyServerTables(zoo_spec, photo_obj_all, spec_obj_all, gal_spec_extra)


def tables_from_canonical(frame: pd.DataFrame, seed: int = 0) -> SkyServerTables:
    """SkyServer tables without quirks holding exactly ``frame``'s rows (canonical columns).

    Each row gets a specobjid that increases with its objid, so paging on either key sees the
    rows in the same order.
    """
    rng = np.random.default_rng(seed)
    rows = frame.reset_index(drop=True)
    objid = rows["objid"].to_numpy(np.int64)
    order = np.argsort(objid, kind="stable")
    specobjid = np.empty(len(rows), dtype=np.int64)
    specobjid[order] = np.sort(_spec_obj_ids(len(rows), rng))
    return _tables(rows, specobjid, objid, NO_QUIRKS, rng)
