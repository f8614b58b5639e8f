"""The data flow end to end under a temporary Prefect server."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from galaxy_morphology.cli import app
from galaxy_morphology.core.prepare import DROP_REASONS, LABEL, SchemaError
from galaxy_morphology.core.schema import PROFILE_COLUMNS
from galaxy_morphology.core.stages import VIEW_REASONS
from galaxy_morphology.flows.data import data_flow
from tests.factories import catalogue, raw_frame, with_values, write_snapshot
from tests.skyserver_tables import Quirks, build_tables
from tests.standin_skyserver import running

pytestmark = pytest.mark.usefixtures("prefect_harness")

SPOILED = {  # row -> (cells, reason)
    0: ({"mag_r": np.nan}, "missing_value"),
    1: ({"stellar_mass": -9999.0}, "sentinel_-9999"),
    2: ({name: 0.0 for name in ("mag_u", "mag_g", "mag_r", "mag_i", "mag_z")}, "all_zero_magnitudes"),
    3: ({"deVAB_r": 1.2}, "axis_ratio_outside_(0,1]"),
    4: ({"expRad_r": 0.0}, "non_positive_radius"),
    5: ({"redshift": -0.02}, "redshift_below_-0.01"),
    6: ({"mag_z": 60.0}, "out_of_physical_range"),
    20: ({"spiral": 1}, "invalid_label_flags"),  # an elliptical with the spiral flag too
}


def write_settings(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(f"data:\n  cache_dir: {tmp_path / 'cache'}\nsplit:\n  seed: 3\n{extra}")
    return path


def tiny_snapshot(tmp_path: Path) -> Path:
    """20 spirals, 10 ellipticals, 3 uncertain rows; one spoiled row per drop reason."""
    frame = raw_frame(n_spiral=20, n_elliptical=10, n_uncertain=3)
    for row, (cells, _) in SPOILED.items():
        frame = with_values(frame, row, **cells)
    return write_snapshot(frame, tmp_path / "tiny.csv.gz")


def test_data_flow_on_a_tiny_snapshot(tmp_path: Path) -> None:
    snapshot = tiny_snapshot(tmp_path)
    prepared = data_flow(snapshot=str(snapshot), settings_file=str(write_settings(tmp_path)))
    assert prepared.source == f"snapshot:{snapshot.resolve()}"
    assert prepared.dropped == {reason: 1 for reason in DROP_REASONS}
    # 7 of the 20 spirals and 1 of the 10 ellipticals are dropped
    assert prepared.counts == {
        "raw": 33,
        "clean": 25,
        "dropped": 8,
        "labelled": 22,
        "unlabelled": 3,
        "labelled_spiral": 13,
        "labelled_elliptical": 9,
        "train": 18,
        "validation": 2,
        "test": 2,
    }
    assert prepared.split.sizes == {"train": 18, "validation": 2, "test": 2}
    assert (prepared.unlabelled["uncertain"] == 1).all()
    parts = [prepared.split.train, prepared.split.validation, prepared.split.test]
    assert sum(len(part) for part in parts) == 22
    assert set(pd.concat(parts)[LABEL]) == {"spiral", "elliptical"}
    assert len(prepared.digest) == 16


def test_data_flow_is_reproducible(tmp_path: Path) -> None:
    snapshot = str(tiny_snapshot(tmp_path))
    settings = str(write_settings(tmp_path))
    first = data_flow(snapshot=snapshot, settings_file=settings)
    second = data_flow(snapshot=snapshot, settings_file=settings)
    assert first.digest == second.digest
    pd.testing.assert_frame_equal(first.split.test, second.split.test)


def test_data_flow_missing_column(tmp_path: Path) -> None:
    frame = raw_frame(n_spiral=5, n_elliptical=5).drop(columns=["deVRad_r"])
    snapshot = write_snapshot(frame, tmp_path / "input" / "broken.csv")
    settings = write_settings(tmp_path)
    with pytest.raises(SchemaError) as error:
        data_flow(snapshot=str(snapshot), settings_file=str(settings))
    assert str(error.value) == "missing required column(s): 'deVRad_r'"
    assert not (tmp_path / "cache").exists()
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["broken.csv", "input", "settings.yaml"]


def test_data_flow_from_skyserver_through_settings(tmp_path: Path) -> None:
    table = catalogue(230)
    with running(table) as server:
        settings = write_settings(
            tmp_path, f"skyserver:\n  base_url: {server.base_url}\n  page_size: 100\n  retries: 0\n"
        )
        prepared = data_flow(source="skyserver", settings_file=str(settings))
    assert prepared.source == "skyserver:DR17"
    assert len(server.page_requests()) == 3
    assert prepared.counts["zoospec_rows"] == prepared.counts["specobj_rows"] == 230
    assert prepared.counts["raw"] == 230
    assert prepared.counts["clean"] == 230
    # catalogue(): per 4 rows, 2 spirals, 1 elliptical, 1 uncertain
    assert prepared.counts["labelled_spiral"] == 115
    assert prepared.counts["labelled_elliptical"] == 58
    assert prepared.counts["unlabelled"] == 57
    assert (tmp_path / "cache" / "skyserver").is_dir()


def test_skyserver_quirks_are_counted_per_stage_and_objids_stay_together(tmp_path: Path) -> None:
    """zooSpec rows the views drop are counted by reason; two GZ1 rows of one object share a side."""
    tables = build_tables(3000, seed=4, quirks=Quirks(duplicate_objid=0.2))  # 600 shared objids
    with running(tables) as server:
        settings = write_settings(tmp_path, f"skyserver:\n  base_url: {server.base_url}\n  page_size: 1000\n")
        prepared = data_flow(source="skyserver", settings_file=str(settings))
    counts = prepared.counts
    assert counts["zoospec_rows"] == 3000 and counts["distinct_objids"] < 3000
    view_drops = sum(counts[f"dropped_{reason}"] for reason in VIEW_REASONS)
    assert view_drops > 0 and counts["raw"] == counts["specobj_rows"] == 3000 - view_drops
    assert counts["raw"] == counts["clean"] + counts["dropped"]
    assert prepared.dropped["sentinel_-9999"] > 0  # the -9999 stellar masses among them
    parts = prepared.split
    assert {"specobjid", *PROFILE_COLUMNS} <= set(parts.train.columns)
    sides = pd.concat(
        [
            part[["objid"]].assign(side=name)
            for name, part in (("train", parts.train), ("validation", parts.validation), ("test", parts.test))
        ]
    )
    shared = sides[sides["objid"].duplicated(keep=False)]
    assert shared["objid"].nunique() >= 30  # labelled pairs of one object made it through
    assert (shared.groupby("objid")["side"].nunique() == 1).all()


def test_data_flow_on_the_shared_snapshot(shared_snapshot: Path, tmp_path: Path) -> None:
    prepared = data_flow(snapshot=str(shared_snapshot), settings_file=str(write_settings(tmp_path)))
    counts = prepared.counts
    assert counts["raw"] == 3976
    assert counts["labelled"] + counts["unlabelled"] + counts["dropped"] == counts["raw"]
    assert counts["dropped"] == sum(prepared.dropped.values())
    # the dirty values the data README lists: empty cells, -9999 sentinels, all-zero magnitudes
    assert prepared.dropped["missing_value"] == 5
    assert prepared.dropped["sentinel_-9999"] == 11
    assert prepared.dropped["all_zero_magnitudes"] == 4  # 3 of the 7 also carry a sentinel
    assert counts["labelled_spiral"] + counts["labelled_elliptical"] == counts["labelled"]
    sizes = prepared.split.sizes
    assert sum(sizes.values()) == counts["labelled"]
    assert sizes["test"] == round(0.1 * counts["labelled"])
    assert sizes["validation"] == round(0.1 * counts["labelled"])


def test_galaxy_ingest_from_skyserver_with_max_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(catalogue(230)) as server:
        settings = write_settings(tmp_path, f"skyserver:\n  base_url: {server.base_url}\n  page_size: 100\n")
        monkeypatch.setenv("GALAXY_SETTINGS_FILE", str(settings))  # --settings sets it; restored after
        result = CliRunner().invoke(
            app, ["ingest", "--source", "skyserver", "--max-rows", "120", "--settings", str(settings)]
        )
    assert result.exit_code == 0, result.output
    assert "source: skyserver:DR17" in result.output
    # aligned tables: a name, then its count right-aligned
    assert re.search(r"^zoospec_rows +120$", result.output, re.M)
    assert re.search(r"^raw +120$", result.output, re.M)
    assert [re.search(r"TOP (\d+)", entry.sql).group(1) for entry in server.page_requests()] == ["100", "20"]  # type: ignore[union-attr]


def test_export_writes_the_labelled_and_unlabelled_rows_and_each_split(tmp_path: Path) -> None:
    snapshot = write_snapshot(raw_frame(60, 30, 12, seed=4), tmp_path / "gz1.csv")
    folder = tmp_path / "export"
    prepared = data_flow(
        snapshot=str(snapshot), settings_file=str(write_settings(tmp_path)), export_dir=str(folder)
    )
    sizes = {name: len(table) for name, table in read_exports(folder).items()}
    assert sizes == {
        "labelled": 90,
        "unlabelled": 12,
        "train": prepared.split.sizes["train"],
        "validation": prepared.split.sizes["validation"],
        "test": prepared.split.sizes["test"],
    }
    assert prepared.exported == {str(folder / f"{name}.csv"): rows for name, rows in sizes.items()}
    test = read_exports(folder)["test"]
    # the input's columns, GZ1 flags included, and the very rows of the test split
    assert LABEL not in test.columns and {"spiral", "elliptical", "uncertain"} <= set(test.columns)
    expected = prepared.split.test.drop(columns=[LABEL])
    pd.testing.assert_frame_equal(test, expected, check_dtype=False)


def test_export_is_all_or_nothing(tmp_path: Path) -> None:
    snapshot = write_snapshot(raw_frame(60, 30, 12, seed=4), tmp_path / "gz1.csv")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "labelled.csv").mkdir()  # a folder where the first file must go: its rename fails
    with pytest.raises(OSError):
        data_flow(snapshot=str(snapshot), settings_file=str(write_settings(tmp_path)), export_dir=str(folder))
    assert [path.name for path in folder.iterdir()] == ["labelled.csv"]  # no file, no temporary left


def read_exports(folder: Path) -> dict[str, pd.DataFrame]:
    return {path.stem: pd.read_csv(path) for path in sorted(folder.glob("*.csv"))}
