"""SkyServer's join stages, counted: which zooSpec rows SkyServer's views keep, and why others go.

The page query (``io/sql/gz1_photometry.sql``) left-joins every zooSpec row to its photometry
(``PhotoObjAll``), its spectrum (``SpecObjAll``) and its stellar mass (``galSpecExtra``), and
returns what each join found (``photo_mode``, ``science_primary``, ``galspec_row``). Here the
rows are filtered the way SkyServer's ``PhotoObj`` view (mode 1 or 2) and ``SpecObj`` view
(sciencePrimary = 1) would filter them in an inner join, with every dropped row counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import pandas as pd

from galaxy_morphology.core.schema import SENTINEL

JOIN_COLUMNS = ("photo_mode", "science_primary", "galspec_row")  # ingest only, not kept after it

# view drop reasons, in the order they are tested: a row counts under the first that applies
VIEW_REASONS = (
    "no_photoobjall_row",
    "photo_mode_not_1_or_2",
    "no_specobjall_row",
    "spectrum_not_science_primary",
)


@dataclass(frozen=True)
class StageCounts:
    """Rows kept at each stage. The field names are the columns of ``io/sql/gz1_stage_counts.sql``,
    which computes the same numbers on SkyServer."""

    zoospec_rows: int  # every zooSpec row (GZ1 table 2: 667,944 in DR17)
    distinct_objids: int  # fewer than zoospec_rows when two GZ1 rows share a DR8 object
    zoospec_labelled: int  # flagged spiral or elliptical
    photoobj_rows: int  # with photometry in the PhotoObj view (mode 1 or 2)
    specobj_rows: int  # and a spectrum in the SpecObj view (sciencePrimary = 1)
    galspec_rows: int  # and a galSpecExtra row
    stellar_mass_rows: int  # and a stellar mass that is not -9999
    stellar_mass_labelled: int  # those flagged spiral or elliptical

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> StageCounts:
        """The counts of fetched rows (the page query's columns)."""
        labelled = ((table["spiral"] == 1) | (table["elliptical"] == 1)).to_numpy(bool)
        photoobj = table["photo_mode"].isin([1, 2]).to_numpy(bool)
        specobj = photoobj & (table["science_primary"] == 1).fillna(False).to_numpy(bool)
        galspec = specobj & (table["galspec_row"] == 1).to_numpy(bool)
        mass = galspec & (table["stellar_mass"] != SENTINEL).to_numpy(bool)
        return cls(
            zoospec_rows=len(table),
            distinct_objids=int(table["objid"].nunique()),
            zoospec_labelled=int(labelled.sum()),
            photoobj_rows=int(photoobj.sum()),
            specobj_rows=int(specobj.sum()),
            galspec_rows=int(galspec.sum()),
            stellar_mass_rows=int(mass.sum()),
            stellar_mass_labelled=int((mass & labelled).sum()),
        )

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> StageCounts:
        """The counts SkyServer computed (a sum over no rows is NULL: 0 here)."""
        values = {}
        for field in fields(cls):
            value = row[field.name]
            values[field.name] = 0 if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def view_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows an inner join with the PhotoObj and SpecObj views keeps (without the join
    columns), and the number of the others per reason (``VIEW_REASONS``)."""
    mode = table["photo_mode"]
    primary = table["science_primary"]
    reasons = {
        "no_photoobjall_row": mode.isna(),
        "photo_mode_not_1_or_2": ~mode.isin([1, 2]),
        "no_specobjall_row": primary.isna(),
        "spectrum_not_science_primary": primary != 1,
    }
    dropped: dict[str, int] = {}
    gone = pd.Series(False, index=table.index)
    for reason, mask in reasons.items():
        hit = mask.fillna(True).astype(bool) & ~gone
        dropped[reason] = int(hit.sum())
        gone |= hit
    kept = table[~gone].drop(columns=list(JOIN_COLUMNS))
    return kept.reset_index(drop=True), dropped


def stage_report(counts: StageCounts, dropped: Mapping[str, int]) -> dict[str, int]:
    """Every stage count and every view drop, flat: what the data step logs and records."""
    return {**counts.as_dict(), **{f"dropped_{reason}": int(dropped[reason]) for reason in VIEW_REASONS}}
