"""Ingest: snapshot files, and SkyServer paging through real astroquery against a stand-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.core.schema import COLUMN_NAMES
from galaxy_morphology.io.skyserver import (
    IngestError,
    SkyServerRequest,
    astroquery_fetch,
    count_query,
    page_query,
    parse_csv_page,
)
from galaxy_morphology.io.tables import TableError
from galaxy_morphology.tasks.ingest import fetch_skyserver, read_snapshot
from tests.factories import catalogue, raw_frame, write_snapshot
from tests.standin_skyserver import FAULTS, StandInSkyServer, running

ROWS = 230
PAGE_SIZE = 50
CLIENT_TIMEOUT = 1.0  # seconds; the stand-in's timeout fault sleeps 2 s

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


# --------------------------------------------------------------------------- SQL and CSV


def test_page_and_count_queries() -> None:
    page = page_query(1237648702966038600, 50)
    assert page.startswith("SELECT TOP 50\n")
    assert "WHERE zs.objid > 1237648702966038600" in page
    assert page.rstrip().endswith("ORDER BY zs.objid")
    assert "--" not in page  # comments would swallow the rest of the one-line query
    for column in COLUMN_NAMES:
        assert f" AS {column}" in page
    count = count_query()
    assert count.startswith("SELECT COUNT_BIG(*) AS n FROM (")
    assert "TOP" not in count
    assert "ORDER BY" not in count  # not allowed in a derived table without TOP
    assert "zs.objid > -1" in count


def test_parse_csv_page() -> None:
    frame = parse_csv_page("#Table1\nobjid,ra\n1237648702966038528,1.5\n1237648702966038529,2.5\n")
    assert frame["objid"].tolist() == [1237648702966038528, 1237648702966038529]
    assert frame["ra"].tolist() == [1.5, 2.5]
    with pytest.raises(IngestError, match="truncated"):
        parse_csv_page("#Table1\nobjid,ra\n1237648702966038528,1.5\n12376487")
    with pytest.raises(IngestError, match="no header"):
        parse_csv_page("#Table1\n")


# --------------------------------------------------------------------------- SkyServer


@pytest.fixture(scope="module")
def clean_table() -> pd.DataFrame:
    return catalogue(ROWS)


@pytest.fixture
def skyserver(prefect_harness: None, clean_table: pd.DataFrame) -> Iterator[StandInSkyServer]:
    with running(clean_table, timeout_sleep=2 * CLIENT_TIMEOUT) as server:
        yield server


def sky_request(**changes: object) -> SkyServerRequest:
    values: dict[str, object] = {
        "release": 17,
        "page_size": PAGE_SIZE,
        "max_rows": None,
        "timeout_seconds": CLIENT_TIMEOUT,
        "retries": 2,
        "backoff_seconds": 0.01,
    }
    values.update(changes)
    return SkyServerRequest(**values)  # type: ignore[arg-type]


def ingest(server: StandInSkyServer, cache: Path, request: SkyServerRequest) -> tuple[pd.DataFrame, Path]:
    fetch = astroquery_fetch(request.release, request.timeout_seconds, server.base_url)
    return fetch_skyserver(request, cache, fetch)


def page_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("page-*.parquet"))


def afters(server: StandInSkyServer) -> list[int]:
    """The ``objid > n`` bound of each page request, in order."""
    return [int(re.search(r"zs\.objid > (-?\d+)", entry.sql).group(1)) for entry in server.page_requests()]


def test_full_fetch_assembles_every_page(
    skyserver: StandInSkyServer, clean_table: pd.DataFrame, tmp_path: Path
) -> None:
    table, table_path = ingest(skyserver, tmp_path, sky_request())
    pd.testing.assert_frame_equal(table, clean_table)
    assert table["objid"].is_monotonic_increasing
    assert table_path.name == "table.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(table_path), clean_table)
    folder = table_path.parent
    assert page_files(folder) == [f"page-{number:05d}.parquet" for number in range(5)]
    assert [len(pd.read_parquet(folder / name)) for name in page_files(folder)] == [50, 50, 50, 50, 30]
    assert not list(folder.glob(".*.tmp"))
    # one count, then five pages, each after the last objid of the one before
    assert len(skyserver.count_requests()) == 1
    assert "COUNT_BIG(*)" in skyserver.count_requests()[0].sql
    pages = skyserver.page_requests()
    assert len(pages) == 5
    assert [entry.release for entry in skyserver.requests] == [17] * 6
    objids = clean_table["objid"]
    assert afters(skyserver) == [-1, *(int(objids[49 + 50 * k]) for k in range(4))]
    assert [int(re.search(r"TOP (\d+)", entry.sql).group(1)) for entry in pages] == [50, 50, 50, 50, 30]
    assert all("ORDER BY zs.objid" in entry.sql for entry in pages)


def test_rerun_after_completion_sends_no_request(skyserver: StandInSkyServer, tmp_path: Path) -> None:
    first, _ = ingest(skyserver, tmp_path, sky_request())
    skyserver.reset_log()
    again, _ = ingest(skyserver, tmp_path, sky_request())
    assert skyserver.requests == []
    pd.testing.assert_frame_equal(again, first)


def test_interrupted_ingest_resumes_at_the_failed_page(
    skyserver: StandInSkyServer, clean_table: pd.DataFrame, tmp_path: Path
) -> None:
    skyserver.inject([None, None, "500"])
    with pytest.raises(IngestError, match=r"page 3/5 failed after 1 attempts: .*HTTP 500"):
        ingest(skyserver, tmp_path, sky_request(retries=0))
    folder = tmp_path / "skyserver" / sky_request().key()
    assert page_files(folder) == ["page-00000.parquet", "page-00001.parquet"]
    assert not (folder / "table.parquet").exists()

    skyserver.reset_log()
    table, _ = ingest(skyserver, tmp_path, sky_request(retries=0))
    objids = clean_table["objid"]
    assert skyserver.count_requests() == []  # the row count is kept in the manifest
    assert afters(skyserver) == [int(objids[99]), int(objids[149]), int(objids[199])]  # pages 3, 4, 5
    assert (folder / "table.parquet").exists()

    uninterrupted, _ = ingest(skyserver, tmp_path / "fresh", sky_request())
    pd.testing.assert_frame_equal(table, uninterrupted)
    pd.testing.assert_frame_equal(table, clean_table)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_is_retried_and_no_bad_page_is_kept(
    skyserver: StandInSkyServer, clean_table: pd.DataFrame, tmp_path: Path, fault: str
) -> None:
    skyserver.inject([None, fault])  # page 2, first attempt
    table, table_path = ingest(skyserver, tmp_path, sky_request(retries=1))
    pd.testing.assert_frame_equal(table, clean_table)
    assert [entry.fault for entry in skyserver.page_requests()] == [None, fault, None, None, None, None]
    # the retry asked for the same page again
    assert afters(skyserver)[1] == afters(skyserver)[2]
    page_two = pd.read_parquet(table_path.parent / "page-00001.parquet")
    pd.testing.assert_frame_equal(page_two, clean_table.iloc[50:100].reset_index(drop=True))


EXPECTED_MESSAGE = {
    "500": r"SkyServer DR17 answered HTTP 500 Internal Server Error: .*Server Error in",
    "timeout": r"(?i)timed? ?out",
    "truncate_line": r"truncated",
    "truncate_rows": r"page has 47 rows, expected 50: truncated",
    "disconnect": r"(?i)connection broken|incomplete|IncompleteRead",
}


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_without_retries_stops_the_ingest(
    skyserver: StandInSkyServer, tmp_path: Path, fault: str
) -> None:
    skyserver.inject([None, fault])
    with pytest.raises(IngestError, match=r"^page 2/5 failed after 1 attempts: ") as error:
        ingest(skyserver, tmp_path, sky_request(retries=0))
    assert re.search(EXPECTED_MESSAGE[fault], str(error.value)), str(error.value)
    folder = tmp_path / "skyserver" / sky_request().key()
    assert page_files(folder) == ["page-00000.parquet"]
    assert not (folder / "table.parquet").exists()
    assert not list(folder.glob(".*.tmp"))
    assert len(skyserver.page_requests()) == 2


def test_retries_exhausted(skyserver: StandInSkyServer, tmp_path: Path) -> None:
    skyserver.inject(["500", "truncate_rows", "500"])
    with pytest.raises(IngestError, match=r"page 1/5 failed after 3 attempts"):
        ingest(skyserver, tmp_path, sky_request(retries=2))
    assert len(skyserver.page_requests()) == 3
    assert page_files(tmp_path / "skyserver" / sky_request().key()) == []


def test_max_rows(skyserver: StandInSkyServer, clean_table: pd.DataFrame, tmp_path: Path) -> None:
    table, table_path = ingest(skyserver, tmp_path, sky_request(max_rows=120))
    pd.testing.assert_frame_equal(table, clean_table.head(120))
    assert [int(re.search(r"TOP (\d+)", entry.sql).group(1)) for entry in skyserver.page_requests()] == [
        50,
        50,
        20,
    ]
    assert page_files(table_path.parent) == [f"page-{number:05d}.parquet" for number in range(3)]
    # another limit is another query: its pages are kept apart
    assert sky_request(max_rows=120).key() != sky_request().key()


def test_empty_result(prefect_harness: None, tmp_path: Path) -> None:
    with running(catalogue(0)) as server:
        table, _ = ingest(server, tmp_path, sky_request())
    assert table.empty
    assert list(table.columns) == list(COLUMN_NAMES)


def test_release_selects_the_url(skyserver: StandInSkyServer, tmp_path: Path) -> None:
    ingest(skyserver, tmp_path, sky_request(release=16, max_rows=10))
    assert {entry.release for entry in skyserver.requests} == {16}
