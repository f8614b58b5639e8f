"""The canonical raw table: its columns, their types, their physical ranges.

One description serves every place that reads catalogue rows: the ingest, the cleaning
step, the model's input signature and the scoring server's validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["id", "float", "count", "flag"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    description: str
    low: float | None = None  # inclusive physical bound (after the named drop rules)
    high: float | None = None
    feature: bool = False  # a model input


SENTINEL = -9999.0
MAGNITUDES = ("mag_u", "mag_g", "mag_r", "mag_i", "mag_z")
AXIS_RATIOS = ("deVAB_r", "expAB_r")
RADII = ("deVRad_r", "expRad_r")
FLAGS = ("spiral", "elliptical", "uncertain")

COLUMNS: tuple[Column, ...] = (
    Column("objid", "id", "SDSS photometric object id (PhotoObj.objID)"),
    Column("ra", "float", "right ascension, degrees", 0.0, 360.0),
    Column("dec", "float", "declination, degrees", -90.0, 90.0),
    Column("redshift", "float", "spectroscopic redshift", -0.01, 7.0, feature=True),
    *(Column(name, "float", f"{name[-1]}-band magnitude", 5.0, 40.0, feature=True) for name in MAGNITUDES),
    Column("deVRad_r", "float", "de Vaucouleurs fit radius, r band, arcsec", None, 300.0, True),
    Column("deVAB_r", "float", "de Vaucouleurs fit axis ratio b/a, r band", None, None, True),
    Column("expRad_r", "float", "exponential fit radius, r band, arcsec", None, 300.0, True),
    Column("expAB_r", "float", "exponential fit axis ratio b/a, r band", None, None, True),
    Column("stellar_mass", "float", "log10 stellar mass / Msun", 5.0, 14.0, feature=True),
    Column("votes", "count", "number of GZ1 votes (NVOTE)", 0, None),
    Column("p_el_debiased", "float", "GZ1 debiased elliptical vote fraction", 0.0, 1.0),
    Column("p_cs_debiased", "float", "GZ1 debiased combined-spiral vote fraction", 0.0, 1.0),
    Column("spiral", "flag", "GZ1 flag: spiral"),
    Column("elliptical", "flag", "GZ1 flag: elliptical"),
    Column("uncertain", "flag", "GZ1 flag: uncertain"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in COLUMNS)
FEATURE_COLUMNS: tuple[str, ...] = tuple(column.name for column in COLUMNS if column.feature)
BY_NAME: dict[str, Column] = {column.name: column for column in COLUMNS}

# Names other catalogues give to canonical columns (lower-cased on lookup).
ALIASES: dict[str, str] = {
    "id": "objid",
    "objid": "objid",
    "dr7objid": "objid",
    "specobjid_photo": "objid",
    "z": "redshift",
    "nvote": "votes",
    "p_el_debiased": "p_el_debiased",
    "p_cs_debiased": "p_cs_debiased",
    "logmass": "stellar_mass",
    "lgm_tot_p50": "stellar_mass",
}

LABEL_ELLIPTICAL = "elliptical"
LABEL_SPIRAL = "spiral"
CLASSES: tuple[str, str] = (LABEL_SPIRAL, LABEL_ELLIPTICAL)  # positive class last
