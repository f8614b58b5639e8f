"""Ingest: the raw GZ1 + SDSS table from SkyServer (paged, cached, resumable) or a snapshot file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import requests
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from galaxy.prepare import SchemaError, canonicalize
from galaxy.schema import COLUMN_NAMES

SQL_FILE = Path(__file__).parent / "sql" / "gz1_photometry.sql"
SNAPSHOT_SUFFIXES = (".csv", ".csv.gz", ".parquet")


class IngestError(RuntimeError):
    """The source could not deliver a complete, well-formed table."""


class PageError(IngestError):
    """One page came back unusable (truncated, malformed, out of order); it is retried."""


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("galaxy.ingest")


# --------------------------------------------------------------------------- snapshot


def read_table(path: Path, what: str = "snapshot") -> pd.DataFrame:
    """A CSV, CSV.gz or Parquet file as it is; ``IngestError`` names the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{what} file not found: {path}")
    name = path.name.lower()
    if not name.endswith((".parquet", ".csv", ".csv.gz")):
        raise IngestError(f"{what} {path}: unsupported file type (use {', '.join(SNAPSHOT_SUFFIXES)})")
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except Exception as error:  # unreadable content: name the file and the parser's message
        raise IngestError(f"{what} {path}: cannot be read ({type(error).__name__}: {error})") from error


def read_snapshot(path: Path) -> pd.DataFrame:
    """Read a snapshot file and give its columns their canonical names."""
    return canonicalize(read_table(path))


# --------------------------------------------------------------------------- SkyServer


def sql_template() -> str:
    """The page query, with SQL comments removed (SkyServer receives one line)."""
    lines = [line.split("--")[0].rstrip() for line in SQL_FILE.read_text().splitlines()]
    return "\n".join(line for line in lines if line.strip())


def page_query(after_objid: int, top: int) -> str:
    return sql_template().format(top=f"TOP {top}", after_objid=after_objid, order_by="ORDER BY zs.objid")


def count_query(after_objid: int = -1) -> str:
    inner = sql_template().format(top="", after_objid=after_objid, order_by="")
    return f"SELECT COUNT_BIG(*) AS n FROM ({inner}) AS q"


@dataclass(frozen=True)
class SkyServerRequest:
    release: int
    page_size: int
    max_rows: int | None
    timeout_seconds: float
    retries: int
    backoff_seconds: float
    after_objid: int = -1  # a window of the table: rows with a larger objid (monitoring batches)

    def key(self) -> str:
        """Hash of everything that decides the pages' content and boundaries."""
        parts = [sql_template(), self.release, self.page_size, self.max_rows, self.after_objid]
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


Fetch = Callable[[str], str]


def astroquery_fetch(release: int, timeout: float, base_url: str | None = None) -> Fetch:
    """A function that sends SQL through astroquery's SDSS interface and returns the CSV text."""
    from astroquery.sdss import SDSS, conf

    def fetch(sql: str) -> str:
        with conf.set_temp("skyserver_baseurl", base_url or conf.skyserver_baseurl):
            response = SDSS.query_sql_async(sql, timeout=timeout, data_release=release, cache=False)
        if not response.ok:  # raise_for_status() would quote the whole URL, i.e. the query
            raise IngestError(
                f"SkyServer DR{release} answered HTTP {response.status_code} {response.reason}: "
                f"{response.text[:200]!r}"
            )
        text = response.text
        if "error_message" in text:
            raise IngestError(f"SkyServer refused the query: {text[:300]}")
        return text

    return fetch


def parse_csv_page(text: str) -> pd.DataFrame:
    """Parse SkyServer's CSV (a ``#Table1`` line, a header, rows); refuse a truncated body."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    if not lines:
        raise PageError("empty response body (no header line)")
    if not text.endswith("\n"):
        raise PageError("response body does not end with a newline: truncated")
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, body = rows[0], rows[1:]
    for number, row in enumerate(body, start=1):
        if len(row) != len(header):
            raise PageError(f"row {number} has {len(row)} fields, header has {len(header)}: truncated")
    frame = pd.DataFrame(body, columns=header)
    return frame.apply(pd.to_numeric, errors="coerce") if len(frame) else frame


def _with_retries(what: str, action: Callable[[], pd.DataFrame], request: SkyServerRequest) -> pd.DataFrame:
    log = _logger()
    last: Exception | None = None
    for attempt in range(request.retries + 1):
        try:
            return action()
        except (requests.RequestException, PageError, IngestError) as error:
            last = error
            if attempt == request.retries:
                break
            delay = request.backoff_seconds * (2**attempt)
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, error, attempt + 1, request.retries, delay
            )
            time.sleep(delay)
    raise IngestError(f"{what} failed after {request.retries + 1} attempts: {last}")


def _check_page(frame: pd.DataFrame, after: int, expected: int) -> pd.DataFrame:
    try:
        frame = canonicalize(frame)
    except SchemaError as error:
        raise PageError(str(error)) from error
    if frame["objid"].isna().any():
        raise PageError("page has an empty objid")
    objid = frame["objid"].astype("int64")
    if len(frame) != expected:
        raise PageError(f"page has {len(frame)} rows, expected {expected}: truncated")
    if len(frame) and (
        objid.iloc[0] <= after or not objid.is_monotonic_increasing or objid.duplicated().any()
    ):
        raise PageError("page objids are not strictly increasing after the previous page")
    frame = frame[list(COLUMN_NAMES)].copy()
    frame["objid"] = objid
    return frame


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    temporary = path.with_suffix(f".tmp-{os.getpid()}")
    frame.to_parquet(temporary, index=False)
    os.replace(temporary, path)


def fetch_skyserver(request: SkyServerRequest, cache_dir: Path, fetch: Fetch) -> tuple[pd.DataFrame, Path]:
    """Page through the query, caching each finished page; assemble only when all are done."""
    log = _logger()
    folder = Path(cache_dir) / "skyserver" / request.key()
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / "table.parquet"
    if table_path.exists():
        log.info("SkyServer table already complete in cache: %s", table_path)
        return pd.read_parquet(table_path), table_path

    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        total = int(json.loads(manifest_path.read_text())["rows"])
    else:
        counted = _with_retries(
            "row count", lambda: parse_csv_page(fetch(count_query(request.after_objid))), request
        )
        total = int(counted.iloc[0, 0])
        manifest_path.write_text(json.dumps({"rows": total, "release": request.release}))
    if request.max_rows is not None:
        total = min(total, request.max_rows)
    pages = max(1, math.ceil(total / request.page_size))
    log.info("SkyServer DR%d: %d rows in %d page(s) of %d", request.release, total, pages, request.page_size)

    frames: list[pd.DataFrame] = []
    after = request.after_objid
    for number in range(pages):
        path = folder / f"page-{number:05d}.parquet"
        expected = min(request.page_size, total - number * request.page_size)
        if path.exists():
            page = pd.read_parquet(path)
            log.info("page %d/%d: %d rows from cache", number + 1, pages, len(page))
        else:
            sql = page_query(after, expected)

            def get(sql: str = sql, after: int = after, expected: int = expected) -> pd.DataFrame:
                return _check_page(parse_csv_page(fetch(sql)), after, expected)

            page = _with_retries(f"page {number + 1}/{pages}", get, request)
            _atomic_parquet(page, path)
            log.info("page %d/%d: %d rows fetched", number + 1, pages, len(page))
        frames.append(page)
        if len(page):
            after = int(page["objid"].iloc[-1])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMN_NAMES)
    _atomic_parquet(table, table_path)
    return table, table_path


# --------------------------------------------------------------------------- tasks


@task(name="ingest-snapshot", cache_policy=NO_CACHE)
def ingest_snapshot(path: Path) -> pd.DataFrame:
    frame = read_snapshot(path)
    _logger().info("snapshot %s: %d rows", path, len(frame))
    return frame


@task(name="ingest-skyserver", cache_policy=NO_CACHE)
def ingest_skyserver(request: SkyServerRequest, cache_dir: Path, base_url: str | None = None) -> pd.DataFrame:
    fetch = astroquery_fetch(request.release, request.timeout_seconds, base_url)
    table, _ = fetch_skyserver(request, cache_dir, fetch)
    return table
