"""SkyServer's join stages: the views' rules and the counts per stage (pure)."""

from __future__ import annotations

import pandas as pd

from galaxy_morphology.core.stages import StageCounts, stage_report, view_rows


def joined() -> pd.DataFrame:
    """Six zooSpec rows as the page query returns them: what each join found."""
    return pd.DataFrame(
        {
            "specobjid": [1, 2, 3, 4, 5, 6],
            "objid": [10, 10, 30, 40, 50, 60],  # rows 1 and 2: two GZ1 rows of one object
            "photo_mode": pd.array([1, 1, None, 3, 2, 1], dtype="Int64"),
            "science_primary": pd.array([1, 1, None, 1, None, 0], dtype="Int64"),
            "galspec_row": [1, 0, 0, 1, 1, 1],
            "stellar_mass": [10.5, -9999.0, -9999.0, 11.0, 10.0, 10.2],
            "spiral": [1, 0, 1, 0, 0, 1],
            "elliptical": [0, 1, 0, 1, 0, 0],
        }
    )


def test_view_rows_keep_what_an_inner_join_with_the_views_keeps() -> None:
    kept, dropped = view_rows(joined())
    assert kept["specobjid"].tolist() == [1, 2]
    assert "photo_mode" not in kept.columns and "galspec_row" not in kept.columns
    # a row counts under its first reason: row 3 has neither photometry nor a spectrum
    assert dropped == {
        "no_photoobjall_row": 1,
        "photo_mode_not_1_or_2": 1,
        "no_specobjall_row": 1,
        "spectrum_not_science_primary": 1,
    }


def test_stage_counts_and_report() -> None:
    counts = StageCounts.from_table(joined())
    assert counts == StageCounts(
        zoospec_rows=6,
        distinct_objids=5,
        zoospec_labelled=5,
        photoobj_rows=4,
        specobj_rows=2,
        galspec_rows=1,
        stellar_mass_rows=1,
        stellar_mass_labelled=1,
    )
    row = {**counts.as_dict(), "galspec_rows": None}  # a SUM over no rows is NULL on SkyServer
    assert StageCounts.from_row(row).galspec_rows == 0
    report = stage_report(counts, view_rows(joined())[1])
    assert report["zoospec_rows"] == 6 and report["dropped_spectrum_not_science_primary"] == 1
