"""The SkyServer stand-in itself: its T-SQL rewrite, spExecuteSQL's filter, its tables and quirks, its
HTTP face as astroquery sees it."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import requests
from astropy.io.ascii import InconsistentTableError
from astroquery.exceptions import RemoteServiceError
from astroquery.sdss import SDSS, conf

from tests.skyserver_tables import NO_QUIRKS, SkyServerTables, build_tables
from tests.standin_skyserver import (
    ROW_LIMIT,
    StandInSkyServer,
    csv_text,
    running,
    sp_execute_sql,
    to_sqlite,
)

# --------------------------------------------------------------------------- SQL


@pytest.mark.parametrize(
    ("tsql", "sqlite"),
    [
        ("SELECT TOP 5 a FROM t ORDER BY a", "SELECT a FROM t ORDER BY a LIMIT 5"),
        ("select top 500000 COUNT_BIG(*) AS n FROM t", "SELECT COUNT(*) AS n FROM t LIMIT 500000"),
        ("SELECT DISTINCT TOP 3 a FROM t", "SELECT DISTINCT a FROM t LIMIT 3"),
        ("SELECT ISNULL(g.x, -9999) AS m FROM g", "SELECT IFNULL(g.x, -9999) AS m FROM g"),
        ("SELECT count_big (DISTINCT a) FROM t", "SELECT COUNT(DISTINCT a) FROM t"),
        # an inner SELECT keeps its text; only the outer TOP becomes a LIMIT
        (
            "SELECT COUNT_BIG(*) AS n FROM (SELECT a FROM t) AS q",
            "SELECT COUNT(*) AS n FROM (SELECT a FROM t) AS q",
        ),
        ("SELECT a FROM t WHERE b = 'ISNULL(x)'", "SELECT a FROM t WHERE b = 'IFNULL(x)'"),
    ],
)
def test_to_sqlite(tsql: str, sqlite: str) -> None:
    assert to_sqlite(tsql) == sqlite


def test_sp_execute_sql_adds_top_refuses_and_blanks() -> None:
    command, error = sp_execute_sql("SELECT COUNT_BIG(*) AS n FROM zooSpec")
    assert error is None
    assert command.startswith(f"SELECT top {ROW_LIMIT} COUNT_BIG(*)")
    command, error = sp_execute_sql("SELECT TOP 50000 specobjid FROM zooSpec")
    assert (command.strip(), error) == ("SELECT TOP 50000 specobjid FROM zooSpec", None)
    _, error = sp_execute_sql(f"SELECT TOP {ROW_LIMIT + 1} specobjid FROM zooSpec")
    assert error is not None and error.startswith(f"error: limit is  top {ROW_LIMIT} ")
    _, error = sp_execute_sql("DELETE FROM zooSpec")
    assert error is not None and error.startswith("error: must be a select statement")
    command, _ = sp_execute_sql("SELECT a FROM t; SELECT dbo.fn_x(1) FROM t")
    assert ";" not in command and "fn_" not in command


# --------------------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def tables() -> SkyServerTables:
    return build_tables(5000, seed=7)


@pytest.fixture(scope="module")
def server(tables: SkyServerTables) -> Iterator[StandInSkyServer]:
    with running(tables) as stand_in:
        yield stand_in


def test_tables_carry_skyservers_keys_and_quirks(tables: SkyServerTables, server: StandInSkyServer) -> None:
    zoo = tables.zoo_spec
    assert zoo["specobjid"].is_unique
    assert zoo["objid"].duplicated().sum() == round(0.0032 * 5000)  # two GZ1 rows, one DR8 object
    assert (zoo["objid"] >= 1237645876861272064).all()  # DR8 objIDs
    photo = tables.photo_obj_all
    assert photo["objID"].is_unique and set(photo["mode"]) == {1, 2, 3}
    assert (~zoo["objid"].isin(photo["objID"])).sum() == 2  # no PhotoObjAll row
    spec = tables.spec_obj_all
    assert spec["specObjID"].is_unique
    assert (spec["sciencePrimary"] == 0).sum() == 50
    assert (~zoo["specobjid"].isin(spec["specObjID"])).sum() == 2  # no SpecObjAll row
    mass = tables.gal_spec_extra
    assert (~zoo["specobjid"].isin(mass["specObjID"])).sum() >= 50
    assert (mass["lgm_tot_p50"] == -9999).sum() >= 49
    # the views are SkyServer's: PhotoObj = mode 1 or 2, SpecObj = sciencePrimary 1
    counts = server.query(
        "SELECT (SELECT COUNT_BIG(*) FROM PhotoObj) AS photo, (SELECT COUNT_BIG(*) FROM SpecObj) AS spec"
    )
    assert counts["photo"].iloc[0] == photo["mode"].isin([1, 2]).sum()
    assert counts["spec"].iloc[0] == (spec["sciencePrimary"] == 1).sum()


def test_same_seed_same_tables() -> None:
    first, second = build_tables(300, seed=3), build_tables(300, seed=3)
    for name in ("zoo_spec", "photo_obj_all", "spec_obj_all", "gal_spec_extra"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    without = build_tables(300, seed=3, quirks=NO_QUIRKS)
    assert without.zoo_spec["objid"].is_unique
    assert set(without.photo_obj_all["mode"]) <= {1, 2}


# --------------------------------------------------------------------------- HTTP, as astroquery sees it


def query(server: StandInSkyServer, sql: str) -> requests.Response:
    with conf.set_temp("skyserver_baseurl", server.base_url):
        return SDSS.query_sql_async(sql, timeout=10, data_release=17, cache=False)


def test_answers_what_astroquery_sends(server: StandInSkyServer) -> None:
    response = query(server, "SELECT TOP 3 specobjid, objid FROM zooSpec ORDER BY specobjid")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain"
    lines = response.text.split("\n")
    assert lines[:2] == ["#Table1", "specobjid,objid"] and len(lines) == 6 and lines[-1] == ""
    logged = server.requests[-1]
    assert (logged.release, logged.kind, logged.fault) == (17, "page", None)
    # astroquery's own parser reads it, ids as unsigned 64-bit integers
    with conf.set_temp("skyserver_baseurl", server.base_url):
        table = SDSS.query_sql("SELECT TOP 3 specobjid, objid FROM zooSpec ORDER BY specobjid", cache=False)
    assert len(table) == 3 and str(table["specobjid"].dtype) == "uint64"


def test_null_is_an_empty_field() -> None:
    assert csv_text(["a", "b"], [(1, None), (None, 2.5)]) == "#Table1\na,b\n1,\n,2.5\n"


def test_errors_come_back_as_skyserver_sends_them(server: StandInSkyServer) -> None:
    # a failing query: HTTP 200 and the front end's HTML page, not a CSV
    response = query(server, "SELECT TOP 3 nosuchcolumn FROM zooSpec")
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/html"
    assert "<title>Skyserver Error</title>" in response.text and "no such column" in response.text
    # a refused query: spExecuteSQL's one-column error_message table, which astroquery does raise on
    with conf.set_temp("skyserver_baseurl", server.base_url), pytest.raises(RemoteServiceError):
        SDSS.query_sql(f"SELECT TOP {ROW_LIMIT + 1} specobjid FROM zooSpec", cache=False)
    # the error page does not contain "error_message": astroquery parses the HTML as a CSV table
    server.inject(["server_timeout"])
    with conf.set_temp("skyserver_baseurl", server.base_url), pytest.raises(InconsistentTableError):
        SDSS.query_sql("SELECT TOP 3 specobjid FROM zooSpec", cache=False)


def test_searchtool_and_path_are_checked(server: StandInSkyServer) -> None:
    base = f"{server.base_url}/dr17/en/tools/search/x_results.aspx"
    missing_tool = requests.get(
        base, params={"cmd": "SELECT TOP 1 objid FROM zooSpec", "format": "csv"}, timeout=5
    )
    assert "Select proper tool" in missing_tool.text
    assert requests.get(f"{server.base_url}/dr17/x_sql.aspx", timeout=5).status_code == 404


def test_real_rate_limit(tables: SkyServerTables) -> None:
    with running(tables, max_queries_per_window=2, window_seconds=30.0) as limited:
        answers = [query(limited, "SELECT TOP 1 objid FROM zooSpec").text for _ in range(3)]
    assert answers[0].startswith("#Table1\nobjid\n") and answers[1].startswith("#Table1\nobjid\n")
    assert answers[2].startswith("#Table1\nerror_message\nERROR: Maximum 60 queries allowed per minute.")
    assert [entry.fault for entry in limited.requests] == [None, None, "rate_limit"]


def test_unknown_fault_is_refused(server: StandInSkyServer) -> None:
    with pytest.raises(ValueError, match=r"unknown fault\(s\) \['timeout'\]"):
        server.inject(["timeout"])
