"""The canonical raw table: its columns, their types, their physical ranges.

One description serves every place that reads catalogue rows: the ingest, the cleaning
step, the model's input signature and the scoring server's validation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from galaxy_morphology.core.errors import UserError

ColumnKind = Literal["id", "float", "count", "flag"]


class SchemaError(UserError, ValueError):
    """The table cannot be used as it is; the message names the column and the problem."""


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
RADII = ("deVRad_r", "expRad_r", "petroR50_r", "petroR90_r")
FLAGS = ("spiral", "elliptical", "uncertain")
# the r-band luminosity-profile columns SkyServer gives and the shared snapshot lacks: a table
# has all of them or none (core/features.py derives concentration and a likelihood ratio)
PROFILE_COLUMNS = ("fracDeV_r", "petroR50_r", "petroR90_r", "lnLDeV_r", "lnLExp_r")
OBJID = "objid"
ROW_KEY = "specobjid"  # zooSpec's unique key: two GZ1 rows can share one objid

COLUMNS: tuple[Column, ...] = (
    Column("objid", "id", "SDSS photometric object id (SkyServer: DR8 PhotoObj.objID, not unique)"),
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

# Kept when a table has them (SkyServer rows), never required (the snapshot has none).
OPTIONAL_COLUMNS: tuple[Column, ...] = (
    Column(ROW_KEY, "id", "SDSS spectrum id (zooSpec.specobjid, DR8): the row key of SkyServer rows"),
    Column("dr7objid", "id", "SDSS DR7 photometric object id of the GZ1 row (zooSpec.dr7objid)"),
    Column("fracDeV_r", "float", "weight of the de Vaucouleurs component in the deV+exp fit", 0.0, 1.0),
    Column("petroR50_r", "float", "radius holding 50% of the Petrosian flux, r band, arcsec", None, 300.0),
    Column("petroR90_r", "float", "radius holding 90% of the Petrosian flux, r band, arcsec", None, 300.0),
    Column("lnLDeV_r", "float", "de Vaucouleurs fit ln(likelihood), r band"),
    Column("lnLExp_r", "float", "exponential fit ln(likelihood), r band"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in COLUMNS)  # required
OPTIONAL_NAMES: tuple[str, ...] = tuple(column.name for column in OPTIONAL_COLUMNS)
FEATURE_COLUMNS: tuple[str, ...] = tuple(column.name for column in COLUMNS if column.feature)
BY_NAME: dict[str, Column] = {column.name: column for column in (*COLUMNS, *OPTIONAL_COLUMNS)}

KNOWN_NAMES: tuple[str, ...] = (*COLUMN_NAMES, *OPTIONAL_NAMES)


def model_columns(columns: Iterable[str]) -> tuple[str, ...]:
    """The raw columns a model trained on a table with ``columns`` takes.

    ``FEATURE_COLUMNS``, plus ``PROFILE_COLUMNS`` when the table has them (SkyServer rows).
    A table with only some of the profile columns is refused, naming the missing ones.
    """
    names = set(columns)
    present = [name for name in PROFILE_COLUMNS if name in names]
    if not present:
        return FEATURE_COLUMNS
    missing = [name for name in PROFILE_COLUMNS if name not in names]
    if missing:
        raise SchemaError(
            f"profile columns come together: found {present}, missing {missing} (give all five or none)"
        )
    return (*FEATURE_COLUMNS, *PROFILE_COLUMNS)


# Names other catalogues give to canonical columns (lower-cased on lookup).
ALIASES: dict[str, str] = {
    "id": "objid",
    "objid": "objid",
    "specobjid_photo": "objid",
    "z": "redshift",
    "nvote": "votes",
    "p_el_debiased": "p_el_debiased",
    "p_cs_debiased": "p_cs_debiased",
    "logmass": "stellar_mass",
    "lgm_tot_p50": "stellar_mass",
}

# Names used for a canonical column only when the table has no column of that name already:
# a catalogue keyed by DR7 ids may call its id dr7objid; SkyServer rows carry both ids.
FALLBACK_ALIASES: dict[str, str] = {"dr7objid": "objid"}

LABEL_ELLIPTICAL = "elliptical"
LABEL_SPIRAL = "spiral"
CLASSES: tuple[str, str] = (LABEL_SPIRAL, LABEL_ELLIPTICAL)  # positive class last
