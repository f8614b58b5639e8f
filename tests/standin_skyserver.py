"""A local stand-in for SkyServer's SQL search, for tests of the real astroquery path.

It answers ``GET /dr{N}/en/tools/search/x_results.aspx?cmd=<SQL>&format=csv&searchtool=SQL``
the way SkyServer does: ``#Table1`` then a CSV header and rows, as ``text/plain``. The
table is held in memory; the SQL is read only for what the ingest relies on:
``COUNT_BIG(*)`` (answer ``n``), ``TOP n`` and ``zs.objid > last`` (keyset paging).

Faults are injected into successive page requests (not the count query): each page request
takes the next entry of ``faults`` (``None`` for a normal answer) until the list is used up.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd

from tests.factories import catalogue

FAULTS = ("500", "timeout", "truncate_line", "truncate_rows", "disconnect")
PATH = re.compile(r"^/dr(\d+)/en/tools/search/x_results\.aspx$")
TOP = re.compile(r"\bTOP\s+(\d+)", re.IGNORECASE)
AFTER = re.compile(r"zs\.objid\s*>\s*(-?\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Logged:
    """One request the stand-in received."""

    release: int
    sql: str
    kind: str  # "count" or "page"
    fault: str | None


class StandInSkyServer:
    """Serve ``table`` (canonical columns, ``objid`` increasing) on 127.0.0.1, a free port."""

    def __init__(self, table: pd.DataFrame, timeout_sleep: float = 2.0) -> None:
        self.table = table.sort_values("objid").reset_index(drop=True)
        self.timeout_sleep = timeout_sleep
        self.faults: deque[str | None] = deque()
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

    def inject(self, faults: Iterable[str | None]) -> None:
        """Apply ``faults`` to the next page requests, one each (``None``: answer normally)."""
        faults = list(faults)
        unknown = [fault for fault in faults if fault is not None and fault not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {FAULTS}")
        with self._lock:
            self.faults = deque(faults)

    def reset_log(self) -> None:
        with self._lock:
            self.requests = []

    def page_requests(self) -> list[Logged]:
        return [request for request in self.requests if request.kind == "page"]

    def count_requests(self) -> list[Logged]:
        return [request for request in self.requests if request.kind == "count"]

    # ------------------------------------------------------------------ answers

    def answer(self, sql: str) -> tuple[str, str]:
        """The CSV body for ``sql`` and the request kind."""
        if "COUNT_BIG(*)" in sql.upper():
            return f"#Table1\nn\n{len(self.table)}\n", "count"
        top = TOP.search(sql)
        after = AFTER.search(sql)
        rows = self.table
        if after:
            rows = rows[rows["objid"] > int(after.group(1))]
        if top:
            rows = rows.head(int(top.group(1)))
        return "#Table1\n" + rows.to_csv(index=False, lineterminator="\n"), "page"

    def _next_fault(self, kind: str) -> str | None:
        with self._lock:
            if kind != "page" or not self.faults:
                return None
            return self.faults.popleft()

    def _log(self, entry: Logged) -> None:
        with self._lock:
            self.requests.append(entry)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # silence stderr
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                match = PATH.match(url.path)
                query = parse_qs(url.query)
                if not match or query.get("format") != ["csv"] or "cmd" not in query:
                    self._send(404, "text/html", "<html><body>not found</body></html>")
                    return
                sql = query["cmd"][0]
                body, kind = stand_in.answer(sql)
                fault = stand_in._next_fault(kind)
                stand_in._log(Logged(int(match.group(1)), sql, kind, fault))
                # the client may have given up (the timeout fault): nothing left to answer
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer(body, fault)

            def _answer(self, body: str, fault: str | None) -> None:
                if fault == "500":
                    self._send(500, "text/html", "<html><body><h1>Server Error in '/' Application.</h1>")
                elif fault == "timeout":
                    time.sleep(stand_in.timeout_sleep)
                    self._send(200, "text/plain", body)
                elif fault == "truncate_line":
                    self._send(200, "text/plain", body[: _middle_of_a_row(body)])
                elif fault == "truncate_rows":
                    lines = body.splitlines(keepends=True)
                    self._send(200, "text/plain", "".join(lines[: max(2, len(lines) - 3)]))
                elif fault == "disconnect":
                    data = body.encode()
                    half = data[: len(data) // 2]
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(half)
                    self.wfile.flush()
                    self.close_connection = True
                else:
                    self._send(200, "text/plain", body)

            def _send(self, status: int, content_type: str, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _middle_of_a_row(body: str) -> int:
    """An offset inside the last data row, away from its field separators."""
    start = body.rstrip("\n").rfind("\n") + 1
    return start + (len(body) - start) // 2


@contextmanager
def running(table: pd.DataFrame | None = None, timeout_sleep: float = 2.0) -> Iterator[StandInSkyServer]:
    """A started stand-in serving ``table`` (default: 230 synthetic rows), stopped on exit."""
    server = StandInSkyServer(catalogue(230) if table is None else table, timeout_sleep).start()
    try:
        yield server
    finally:
        server.stop()
