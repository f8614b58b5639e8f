"""Ingest: snapshot files, and SkyServer paged through real astroquery against the stand-in that
runs the real SQL, each page and the count a Prefect task run with retries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.core.schema import COLUMN_NAMES
from galaxy_morphology.core.stages import VIEW_REASONS, StageCounts
from galaxy_morphology.io.skyserver import (
    DTYPES,
    OUTPUT_COLUMNS,
    Fetch,
    IngestError,
    ServerTimeout,
    SkyServerRequest,
    astroquery_fetch,
    fetch_stage_counts,
    page_query,
)
from galaxy_morphology.io.tables import TableError
from galaxy_morphology.tasks.ingest import fetch_skyserver, ingest_skyserver, read_snapshot
from tests.factories import catalogue, raw_frame, write_snapshot
from tests.skyserver_tables import SkyServerTables, build_tables, tables_from_canonical
from tests.standin_skyserver import StandInSkyServer, running

ROWS = 2000
PAGE = 500  # four pages
# seconds; the stand-in's slow fault answers after twice this. A clean page takes about 0.1 s,
# but 1 s was once exceeded by a clean retry on a shared CI host (an extra request logged)
CLIENT_TIMEOUT = 3.0
RETRYABLE = ("500", "503", "slow", "truncate_line", "truncate_rows", "disconnect", "rate_limit")

# --------------------------------------------------------------------------- snapshot


@pytest.mark.parametrize("name", ["snapshot.csv", "snapshot.csv.gz", "snapshot.parquet", "SNAPSHOT.CSV"])
def test_read_snapshot_formats(tmp_path: Path, name: str) -> None:
    frame = raw_frame()
    path = write_snapshot(frame.rename(columns={"objid": "id"}), tmp_path / name)
    result = read_snapshot(path)
    assert list(result.columns) == list(COLUMN_NAMES)
    pd.testing.assert_frame_equal(result, frame)


def test_read_snapshot_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"snapshot file not found: .*absent\.csv"):
        read_snapshot(tmp_path / "absent.csv")


def test_read_snapshot_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.xlsx"
    path.write_text("not a table")
    with pytest.raises(TableError, match=r"unsupported file type \(use .csv, .csv.gz, .parquet\)"):
        read_snapshot(path)


def test_read_snapshot_missing_column(tmp_path: Path) -> None:
    path = write_snapshot(raw_frame().drop(columns=["expAB_r"]), tmp_path / "snapshot.csv")
    with pytest.raises(SchemaError, match="'expAB_r'"):
        read_snapshot(path)


# --------------------------------------------------------------------------- SkyServer


def sky_request(**changes: object) -> SkyServerRequest:
    values: dict[str, object] = {
        "page_size": PAGE,
        "timeout_seconds": CLIENT_TIMEOUT,
        "retries": 2,
        "backoff_seconds": 0.0,
        "min_interval_seconds": 0.0,
        "rate_limit_pause_seconds": 0.1,
    }
    values.update(changes)
    return SkyServerRequest(**values)  # type: ignore[arg-type]


def fetcher(server: StandInSkyServer, request: SkyServerRequest) -> Fetch:
    return astroquery_fetch(request, server.base_url)


def ingest(server: StandInSkyServer, cache: Path, request: SkyServerRequest) -> tuple[pd.DataFrame, Path]:
    return fetch_skyserver(request, cache, fetcher(server, request))


def afters(server: StandInSkyServer) -> list[int]:
    """The ``specobjid > n`` bound of each page request, in order."""
    return [
        int(re.search(r"zs\.specobjid > (-?\d+)", entry.sql).group(1))  # type: ignore[union-attr]
        for entry in server.page_requests()
    ]


def tops(server: StandInSkyServer) -> list[int]:
    return [int(re.search(r"TOP (\d+)", entry.sql).group(1)) for entry in server.page_requests()]  # type: ignore[union-attr]


def page_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("page-*.parquet"))


@pytest.fixture(scope="module")
def tables() -> SkyServerTables:
    return build_tables(ROWS, seed=5)


@pytest.fixture
def skyserver(prefect_harness: None, tables: SkyServerTables) -> Iterator[StandInSkyServer]:
    with running(tables, slow_seconds=2 * CLIENT_TIMEOUT) as server:
        yield server


@pytest.fixture(scope="module")
def expected(tables: SkyServerTables) -> pd.DataFrame:
    """What the page query returns for the whole table when run directly, without HTTP or paging."""
    with running(tables) as server:
        return server.query(page_query(-1, 10**9)).astype(DTYPES)[list(OUTPUT_COLUMNS)]


def test_paged_ingest_equals_the_direct_query(
    skyserver: StandInSkyServer, expected: pd.DataFrame, tmp_path: Path
) -> None:
    table, path = ingest(skyserver, tmp_path, sky_request())
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(path), expected)
    assert page_files(path.parent) == [f"page-{number:05d}.parquet" for number in range(4)]
    assert not list(path.parent.glob(".*.tmp"))
    # a count, then four pages, each after the last specobjid of the one before
    assert [entry.kind for entry in skyserver.requests] == ["count", *["page"] * 4]
    keys = expected["specobjid"]
    assert afters(skyserver) == [-1, *(int(keys[PAGE * k - 1]) for k in range(1, 4))]
    assert tops(skyserver) == [PAGE] * 4
    assert all(entry.sql.rstrip().endswith("ORDER BY zs.specobjid") for entry in skyserver.page_requests())
    # a rerun reads the finished table and sends nothing
    skyserver.reset_log()
    again, _ = ingest(skyserver, tmp_path, sky_request())
    assert skyserver.requests == []
    pd.testing.assert_frame_equal(again, expected)


def test_two_gz1_rows_of_one_objid_within_and_across_pages(prefect_harness: None, tmp_path: Path) -> None:
    frame = catalogue(12)
    frame.loc[2, "objid"] = frame.loc[1, "objid"]  # rows 1 and 2: one page (rows 0-3)
    frame.loc[4, "objid"] = frame.loc[3, "objid"]  # rows 3 and 4: across a page boundary
    with running(tables_from_canonical(frame)) as server:
        table, _ = ingest(server, tmp_path, sky_request(page_size=4))
        want = server.query(page_query(-1, 10**9)).astype(DTYPES)[list(OUTPUT_COLUMNS)]
    pd.testing.assert_frame_equal(table, want)
    assert len(table) == 12 and table["specobjid"].is_unique
    assert table["objid"].value_counts().max() == 2 and table["objid"].nunique() == 10
    assert table["objid"].iloc[1] == table["objid"].iloc[2]
    # one DR8 object: the same photometry; two GZ1 spectra: two classifications, two rows
    first, second = table.iloc[3], table.iloc[4]
    assert first["objid"] == second["objid"] and first["mag_r"] == second["mag_r"]
    assert first["specobjid"] != second["specobjid"]


def test_views_rows_and_stage_counts(
    skyserver: StandInSkyServer, expected: pd.DataFrame, tmp_path: Path
) -> None:
    fetched = ingest_skyserver(sky_request(), tmp_path, skyserver.base_url)
    # the rows an inner join with SkyServer's PhotoObj and SpecObj views keeps
    inner = skyserver.query(
        "SELECT zs.specobjid FROM zooSpec AS zs JOIN PhotoObj AS p ON p.objID = zs.objid "
        "JOIN SpecObj AS s ON s.specObjID = zs.specobjid ORDER BY zs.specobjid"
    )
    assert fetched.table["specobjid"].tolist() == inner["specobjid"].tolist()
    assert not {"photo_mode", "science_primary", "galspec_row"} & set(fetched.table.columns)
    # the stage counts equal what SkyServer computes with gz1_stage_counts.sql
    counts = StageCounts.from_table(expected)
    assert fetch_stage_counts(fetcher(skyserver, sky_request())) == counts
    stages = fetched.stages
    assert {key: stages[key] for key in counts.as_dict()} == counts.as_dict()
    assert stages["zoospec_rows"] == ROWS and stages["distinct_objids"] == ROWS - 6  # 6 shared objids
    assert stages["zoospec_rows"] > stages["photoobj_rows"] > stages["specobj_rows"] == len(fetched.table)
    assert stages["specobj_rows"] > stages["galspec_rows"] > stages["stellar_mass_rows"] > 0
    dropped = [stages[f"dropped_{reason}"] for reason in VIEW_REASONS]
    assert all(dropped) and sum(dropped) == ROWS - len(fetched.table)


def test_empty_window(skyserver: StandInSkyServer, expected: pd.DataFrame, tmp_path: Path) -> None:
    last = int(expected["specobjid"].iloc[-1])
    table, _ = ingest(skyserver, tmp_path, sky_request(after_specobjid=last))
    assert table.empty and tuple(table.columns) == OUTPUT_COLUMNS
    assert StageCounts.from_table(table) == StageCounts(0, 0, 0, 0, 0, 0, 0, 0)
    # a SUM over no rows is NULL on the server: 0 here too
    assert fetch_stage_counts(fetcher(skyserver, sky_request()), last) == StageCounts.from_table(table)


def test_max_rows_and_window(skyserver: StandInSkyServer, expected: pd.DataFrame, tmp_path: Path) -> None:
    first, first_path = ingest(skyserver, tmp_path, sky_request(max_rows=700))
    pd.testing.assert_frame_equal(first, expected.head(700))
    assert tops(skyserver) == [500, 200]
    skyserver.reset_log()
    after = int(expected["specobjid"].iloc[999])
    window, window_path = ingest(skyserver, tmp_path, sky_request().window(after, 300))
    pd.testing.assert_frame_equal(window, expected.iloc[1000:1300].reset_index(drop=True))
    assert afters(skyserver) == [after] and f"zs.specobjid > {after}" in skyserver.count_requests()[0].sql
    assert first_path.parent != window_path.parent  # another window is another cache folder


def test_failed_page_stops_the_ingest_and_a_rerun_resumes(
    skyserver: StandInSkyServer, expected: pd.DataFrame, tmp_path: Path
) -> None:
    skyserver.inject([None, None, "500"])
    with pytest.raises(IngestError, match=r"^page 3/4 failed after 1 attempts: HTTP 500"):
        ingest(skyserver, tmp_path, sky_request(retries=0))
    folder = tmp_path / "skyserver" / sky_request().key()
    assert page_files(folder) == ["page-00000.parquet", "page-00001.parquet"]
    assert not (folder / "table.parquet").exists()

    skyserver.reset_log()
    table, _ = ingest(skyserver, tmp_path, sky_request(retries=0))
    pd.testing.assert_frame_equal(table, expected)
    assert skyserver.count_requests() == []  # the row count is kept in the manifest
    keys = expected["specobjid"]
    assert afters(skyserver) == [int(keys[999]), int(keys[1499])]


@pytest.mark.parametrize("fault", RETRYABLE)
def test_fault_is_retried_and_no_bad_page_is_kept(
    skyserver: StandInSkyServer, expected: pd.DataFrame, tmp_path: Path, fault: str
) -> None:
    skyserver.inject([None, fault])  # page 2, first attempt
    table, path = ingest(skyserver, tmp_path, sky_request())
    pd.testing.assert_frame_equal(table, expected)
    assert [entry.fault for entry in skyserver.page_requests()] == [None, fault, None, None, None]
    assert afters(skyserver)[1] == afters(skyserver)[2]  # the retry asked for the same page
    page_two = pd.read_parquet(path.parent / "page-00001.parquet")
    pd.testing.assert_frame_equal(page_two, expected.iloc[PAGE : 2 * PAGE].reset_index(drop=True))


def test_count_query_is_retried_too(skyserver: StandInSkyServer, tmp_path: Path) -> None:
    skyserver.inject(["disconnect"], kind="count")
    table, _ = ingest(skyserver, tmp_path, sky_request())
    assert len(skyserver.count_requests()) == 2 and len(table) == ROWS


def test_retries_exhausted(skyserver: StandInSkyServer, tmp_path: Path) -> None:
    skyserver.inject(["500", "truncate_rows", "503"])
    with pytest.raises(IngestError, match=r"^page 1/4 failed after 3 attempts: HTTP 503"):
        ingest(skyserver, tmp_path, sky_request(retries=2))
    assert len(skyserver.page_requests()) == 3
    assert page_files(tmp_path / "skyserver" / sky_request().key()) == []


def test_server_time_out_is_reported_not_retried_and_smaller_pages_resume(
    skyserver: StandInSkyServer, expected: pd.DataFrame, tmp_path: Path
) -> None:
    skyserver.inject([None, "server_timeout"])
    with pytest.raises(ServerTimeout, match=r"ran past SkyServer's 600 s limit; lower skyserver.page_size"):
        ingest(skyserver, tmp_path, sky_request(retries=3))
    assert len(skyserver.page_requests()) == 2  # asked once, not three more times
    folder = tmp_path / "skyserver" / sky_request().key()
    assert page_files(folder) == ["page-00000.parquet"]

    # smaller pages, as the message says: the finished page is kept, the rest follows it
    skyserver.reset_log()
    table, _ = ingest(skyserver, tmp_path, sky_request(page_size=200))
    pd.testing.assert_frame_equal(table, expected)
    assert skyserver.count_requests() == []
    assert afters(skyserver)[0] == int(expected["specobjid"].iloc[PAGE - 1])
    assert tops(skyserver) == [200] * 7 + [100]  # 1,500 rows in pages of 200
