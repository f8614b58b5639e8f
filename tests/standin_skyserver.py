"""A local SkyServer that runs the project's real SQL, for tests of the astroquery path.

**Tables.** SkyServer's base tables and views with their names, keys and column types
(sciserver/sqlloader, schema/sql/: GalaxyZooTables.sql, PhotoTables.sql, SpectroTables.sql,
galSpecTables.sql, IndexMap.sql, Views.sql), held in SQLite. Only the columns the project reads,
and the keys, are kept. ``tests.skyserver_tables`` builds their content.

**SQL.** A query goes through what SkyServer does to it, then the smallest T-SQL rewrite SQLite
needs (``to_sqlite``: ``TOP n`` -> ``LIMIT n``, ``ISNULL`` -> ``IFNULL``, ``COUNT_BIG`` -> ``COUNT``).
SkyServer's part is ``spExecuteSQL``'s filter (sqlloader schema/sql/spSQLSupport.sql): a query that
is not a SELECT, or whose TOP exceeds the row limit, is answered with a one-column
``error_message`` table; a query without TOP gets ``TOP <row limit>``; ``xp_``/``sp_``/``fn_``/``ms_``/
``dt_`` prefixes and semicolons are blanked out.

**HTTP.** ``GET /dr{N}/en/tools/search/x_results.aspx?cmd=<SQL>&format=csv&searchtool=SQL``, what
astroquery 0.4.11's ``SDSS.query_sql_async`` sends. A result is ``text/plain``: ``#Table1``, a
header, rows, each line ending in ``\\n``, NULL as an empty field (SkyServerWS
Common/OutputUtils.cs ``writeCSV``). An error in the query is what SkyServer's web front end
makes of its web service's HTTP 500: a **200** ``text/html`` "Skyserver Error" page quoting the
service's JSON (SkyServer-DR15 misc/ResponseREST.cs ``runQuery``, ``getErrorMessageHTMLresult``).

**Faults** (``inject``), one per request in order: ``500`` (an IIS error page), ``503`` (the load
balancer's "No server is available"), ``slow`` (answers after ``slow_seconds``: a client time-out),
``truncate_line`` (the body ends inside a row), ``truncate_rows`` (the last rows are missing),
``disconnect`` (half the promised bytes, then the socket closes), ``server_timeout`` (the error
page of a query that ran past SkyServer's 600 s limit), ``rate_limit`` (spExecuteSQL's refusal of
a 61st query in a minute). ``max_queries_per_window`` also refuses, for real, queries that come
faster than that many per ``window_seconds``.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd

from tests.factories import catalogue
from tests.skyserver_tables import SkyServerTables, tables_from_canonical

FAULTS = (
    "500",
    "503",
    "slow",
    "truncate_line",
    "truncate_rows",
    "disconnect",
    "server_timeout",
    "rate_limit",
)
# the faults a page retry cures, injected in turn by fault_plan (the scale test and the benchmark)
RETRYABLE_FAULTS = ("500", "503", "truncate_line", "truncate_rows", "disconnect", "rate_limit")
PATH = re.compile(r"^/dr(\d+)/en/tools/search/x_results\.aspx$", re.IGNORECASE)
ROW_LIMIT = 500_000  # SkyServer's SQL search: at most 500,000 rows per query

# Column types follow SkyServer's: bigint, int, smallint and tinyint -> INTEGER, real and float ->
# REAL, varchar -> TEXT. SpecObjAll.specObjID is numeric(20,0) there; the SDSS-I/II spectra of GZ1
# fit in a 64-bit integer.
SCHEMA = """
CREATE TABLE zooSpec (
    specobjid INTEGER PRIMARY KEY,  -- bigint, primary key (clustered)
    objid INTEGER NOT NULL,         -- bigint, DR8 objID, non-unique index
    dr7objid INTEGER NOT NULL,      -- bigint
    ra REAL NOT NULL, dec REAL NOT NULL,
    nvote INTEGER NOT NULL,
    p_el REAL NOT NULL, p_cs REAL NOT NULL,
    p_el_debiased REAL NOT NULL, p_cs_debiased REAL NOT NULL,
    spiral INTEGER NOT NULL, elliptical INTEGER NOT NULL, uncertain INTEGER NOT NULL
);
CREATE TABLE PhotoObjAll (
    objID INTEGER PRIMARY KEY,      -- bigint, primary key
    mode INTEGER NOT NULL,          -- tinyint: 1 primary, 2 secondary, 3 other
    type INTEGER NOT NULL,          -- smallint
    ra REAL NOT NULL, dec REAL NOT NULL,
    dered_u REAL NOT NULL, dered_g REAL NOT NULL, dered_r REAL NOT NULL,
    dered_i REAL NOT NULL, dered_z REAL NOT NULL,
    deVRad_r REAL NOT NULL, deVAB_r REAL NOT NULL, expRad_r REAL NOT NULL, expAB_r REAL NOT NULL,
    fracDeV_r REAL NOT NULL, petroR50_r REAL NOT NULL, petroR90_r REAL NOT NULL,
    lnLDeV_r REAL NOT NULL, lnLExp_r REAL NOT NULL,
    specObjID INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE SpecObjAll (
    specObjID INTEGER PRIMARY KEY,  -- numeric(20,0), primary key
    bestObjID INTEGER NOT NULL,
    sciencePrimary INTEGER NOT NULL, -- smallint
    z REAL NOT NULL,
    zWarning INTEGER NOT NULL,
    class TEXT NOT NULL
);
CREATE TABLE galSpecExtra (
    specObjID INTEGER PRIMARY KEY,  -- bigint, primary key
    bptclass INTEGER NOT NULL,
    lgm_tot_p50 REAL NOT NULL
);
CREATE INDEX i_zooSpec_objID ON zooSpec (objid);
CREATE VIEW PhotoObj AS SELECT * FROM PhotoObjAll WHERE mode IN (1, 2);
CREATE VIEW SpecObj AS SELECT * FROM SpecObjAll WHERE sciencePrimary = 1;
"""

TABLE_FRAMES = {
    "zooSpec": "zoo_spec",
    "PhotoObjAll": "photo_obj_all",
    "SpecObjAll": "spec_obj_all",
    "galSpecExtra": "gal_spec_extra",
}


def create_database(tables: SkyServerTables) -> sqlite3.Connection:
    """An in-memory SQLite database holding ``tables`` and SkyServer's views over them."""
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    tables_ddl, _, indexes_and_views = SCHEMA.partition("CREATE INDEX")
    connection.executescript(tables_ddl)
    for table, attribute in TABLE_FRAMES.items():
        frame: pd.DataFrame = getattr(tables, attribute)
        frame = frame.sort_values(frame.columns[0])  # the primary key: appending is fastest
        columns = list(frame.columns)
        values = zip(*(frame[column].tolist() for column in columns), strict=True)
        marks = ", ".join("?" * len(columns))
        names = ", ".join(f'"{column}"' for column in columns)
        connection.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)
    connection.executescript("CREATE INDEX" + indexes_and_views)
    connection.commit()
    return connection


# --------------------------------------------------------------------------- SQL


TOP = re.compile(r"^\s*SELECT\s+(DISTINCT\s+)?TOP\s+(\d+)\s+", re.IGNORECASE)
FUNCTIONS = {"ISNULL": "IFNULL", "COUNT_BIG": "COUNT"}
FUNCTION = re.compile(r"\b(" + "|".join(FUNCTIONS) + r")\s*\(", re.IGNORECASE)
SELECT = re.compile(r"^\s*select\s+(distinct\s+)?", re.IGNORECASE)
FILTERED = re.compile(r"[ .](xp_|sp_|fn_|ms_|dt_)", re.IGNORECASE)


def to_sqlite(sql: str) -> str:
    """The smallest rewrite of SkyServer's T-SQL that SQLite runs with the same meaning.

    ``SELECT [DISTINCT] TOP n ...`` -> ``SELECT [DISTINCT] ... LIMIT n`` (the outer query only),
    ``ISNULL(`` -> ``IFNULL(``, ``COUNT_BIG(`` -> ``COUNT(``. Everything else is left as sent.
    """
    rewritten = FUNCTION.sub(lambda match: FUNCTIONS[match.group(1).upper()] + "(", sql)
    top = TOP.match(rewritten)
    if top:
        distinct = top.group(1) or ""
        rewritten = f"SELECT {distinct}{rewritten[top.end() :].rstrip()} LIMIT {top.group(2)}"
    return rewritten


def sp_execute_sql(cmd: str, limit: int = ROW_LIMIT) -> tuple[str, str | None]:
    """What SkyServer's spExecuteSQL filter makes of ``cmd``: (command to run, error message).

    The message is the one spExecuteSQL returns as a one-column ``error_message`` table.
    """
    cmd = cmd + " "
    previous = None
    while cmd != previous:
        previous = cmd
        cmd = FILTERED.sub("#", cmd).replace("  ", " ").replace(";", "#")
    body = cmd.lstrip()
    if not body.lower().startswith("select "):
        return cmd, "error: must be a select statement: " + cmd
    top = TOP.match(body)
    if top is None:
        head = SELECT.match(body)
        start = head.end() if head else 0
        return f"{body[:start]}top {limit} {body[start:]}", None
    if int(top.group(2)) > limit:
        return cmd, f"error: limit is  top {limit} " + cmd
    return body, None


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """SkyServer's CSV: ``#Table1``, the header, one line per row, NULL as an empty field."""
    lines = ["#Table1", ",".join(columns)]
    lines.extend(
        ",".join(map(str, row)) if None not in row else ",".join("" if v is None else str(v) for v in row)
        for row in rows
    )
    return "\n".join(lines) + "\n"


def skyserver_error_page(service_json: str) -> str:
    """SkyServer's answer (HTTP 200, text/html) when its web service failed with a JSON error."""
    message = (
        "Query did not return results successfully, check the input and try again."
        "<br>MORE DETAILED INFO FROM RESPONSE:<br><br>" + service_json
    )
    return (
        "<html><head>\n<title>Skyserver Error</title>\n</head><body bgcolor=white>\n"
        f"<h2>An error occured</h2><H3 BGCOLOR=pink><font color=red><br>{message}</font></H3>"
        "</BODY></HTML>\n"
    )


def service_error_json(message: str) -> str:
    """The web service's JSON error body (SkyServerWS ExceptionFilter/CustomFilter.cs)."""
    return json.dumps(
        {
            "ErrorCode": 500,
            "ErrorType": "InternalServerError",
            "ErrorMessage": message,
            "LogMessageID": "00000000-0000-0000-0000-000000000000",
            "LogTime": "2025-01-01T00:00:00.000Z",
        },
        separators=(",", ":"),
    )


SQL_TIMEOUT_MESSAGE = (
    "Execution Timeout Expired.  The timeout period elapsed prior to completion of the operation "
    "or the server is not responding."
)
RATE_LIMIT_MESSAGE = "ERROR: Maximum 60 queries allowed per minute. Rejected query: "
UNAVAILABLE_PAGE = (  # the load balancer in front of SkyServer, when no web server answers
    "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n"
    "</body></html>\n"
)


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Logged:
    """One request the stand-in received."""

    release: int
    sql: str
    kind: str  # "count" (a COUNT_BIG query) or "page"
    fault: str | None
    at: float  # time.monotonic() on arrival


class StandInSkyServer:
    """Serve ``tables`` on 127.0.0.1 (a free port) the way SkyServer's SQL search does."""

    def __init__(
        self,
        tables: SkyServerTables,
        slow_seconds: float = 2.0,
        max_queries_per_window: int | None = None,
        window_seconds: float = 60.0,
    ) -> None:
        self.tables = tables
        self.connection = create_database(tables)
        self.slow_seconds = slow_seconds
        self.max_queries_per_window = max_queries_per_window
        self.window_seconds = window_seconds
        self.faults: dict[str, deque[str | None]] = {"page": deque(), "count": deque()}
        self.requests: list[Logged] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # ------------------------------------------------------------------ control

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInSkyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.connection.close()

    def inject(self, faults: Iterable[str | None], kind: str = "page") -> None:
        """Apply ``faults`` to the next requests of ``kind``, one each (``None``: answer normally)."""
        faults = list(faults)
        unknown = [fault for fault in faults if fault is not None and fault not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {FAULTS}")
        with self._lock:
            self.faults[kind] = deque(faults)

    def reset_log(self) -> None:
        with self._lock:
            self.requests = []

    def page_requests(self) -> list[Logged]:
        return [request for request in self.requests if request.kind == "page"]

    def count_requests(self) -> list[Logged]:
        return [request for request in self.requests if request.kind == "count"]

    def query(self, sql: str) -> pd.DataFrame:
        """Run T-SQL directly on the tables (no HTTP, no filter): what the SQL itself returns."""
        with self._lock:
            cursor = self.connection.execute(to_sqlite(sql))
            columns = [entry[0] for entry in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)

    # ------------------------------------------------------------------ answers

    def answer(self, sql: str) -> tuple[int, str, str]:
        """Status, content type and body SkyServer sends for ``sql`` (no fault)."""
        command, refused = sp_execute_sql(sql)
        if refused is not None:
            return 200, "text/plain", csv_text(["error_message"], [[refused]])
        try:
            with self._lock:
                cursor = self.connection.execute(to_sqlite(command))
                columns = [entry[0] for entry in cursor.description]
                rows = cursor.fetchall()
        except sqlite3.Error as error:
            return 200, "text/html", skyserver_error_page(service_error_json(str(error)))
        return 200, "text/plain", csv_text(columns, rows)

    def _admit(self, release: int, sql: str) -> tuple[str, str | None]:
        """Log the request; pick its fault (injected first, then the real rate limit)."""
        kind = "count" if "COUNT_BIG(" in sql.upper() else "page"
        now = time.monotonic()
        with self._lock:
            queue = self.faults[kind]
            fault = queue.popleft() if queue else None
            if fault is None and self.max_queries_per_window is not None:
                recent = [entry for entry in self.requests if now - entry.at < self.window_seconds]
                if len(recent) >= self.max_queries_per_window:
                    fault = "rate_limit"
            self.requests.append(Logged(release, sql, kind, fault, now))
        return kind, fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # silence stderr
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                match = PATH.match(url.path)
                query = parse_qs(url.query)
                if not match:
                    self._send(404, "text/html", "<html><body><h1>404 Not Found</h1></body></html>")
                    return
                if query.get("searchtool") != ["SQL"] or "cmd" not in query:
                    self._send(200, "text/html", skyserver_error_page("Select proper tool"))
                    return
                if [value.lower() for value in query.get("format", [])] != ["csv"]:
                    self._send(400, "text/html", "<html><body>unsupported format</body></html>")
                    return
                sql = query["cmd"][0]
                _, fault = stand_in._admit(int(match.group(1)), sql)
                # the client may have given up (the slow fault): nothing left to answer
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer(sql, fault)

            def _answer(self, sql: str, fault: str | None) -> None:
                if fault == "500":
                    self._send(500, "text/html", "<html><body><h1>Server Error in '/' Application.</h1>")
                    return
                if fault == "503":
                    self._send(503, "text/html", UNAVAILABLE_PAGE)
                    return
                if fault == "server_timeout":
                    self._send(
                        200, "text/html", skyserver_error_page(service_error_json(SQL_TIMEOUT_MESSAGE))
                    )
                    return
                if fault == "rate_limit":
                    self._send(200, "text/plain", csv_text(["error_message"], [[RATE_LIMIT_MESSAGE + sql]]))
                    return
                status, content_type, body = stand_in.answer(sql)
                if fault == "slow":
                    time.sleep(stand_in.slow_seconds)
                elif fault == "truncate_line":
                    body = body[: _middle_of_a_row(body)]
                elif fault == "truncate_rows":
                    lines = body.splitlines(keepends=True)
                    body = "".join(lines[: max(2, len(lines) - 3)])
                elif fault == "disconnect":
                    data = body.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(status, content_type, body)

            def _send(self, status: int, content_type: str, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def fault_plan(pages: int) -> list[str | None]:
    """A fault on the first attempt of every other page (2, 4, ...), its retry answered normally."""
    plan: list[str | None] = []
    for number in range(pages):
        plan += [RETRYABLE_FAULTS[(number // 2) % len(RETRYABLE_FAULTS)], None] if number % 2 else [None]
    return plan


def _middle_of_a_row(body: str) -> int:
    """An offset inside the last data row, away from its field separators."""
    start = body.rstrip("\n").rfind("\n") + 1
    return start + (len(body) - start) // 2


@contextmanager
def running(
    tables: SkyServerTables | pd.DataFrame | None = None, **options: Any
) -> Iterator[StandInSkyServer]:
    """A started stand-in, stopped on exit. ``tables``: SkyServer tables, or a canonical table
    (default: 230 synthetic rows) to hold without quirks."""
    if tables is None:
        tables = catalogue(230)
    if isinstance(tables, pd.DataFrame):
        tables = tables_from_canonical(tables)
    server = StandInSkyServer(tables, **options).start()
    try:
        yield server
    finally:
        server.stop()
