"""SkyServer's SQL search through astroquery: the query, one page, and the page cache.

Paging (one Prefect task per page, with retries) lives in ``tasks/ingest.py``; this module
holds what one attempt does: send SQL, parse SkyServer's CSV, check the page, cache it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path

import pandas as pd
import requests

from galaxy_morphology.core.prepare import SchemaError, canonicalize
from galaxy_morphology.core.schema import COLUMN_NAMES
from galaxy_morphology.core.settings import Settings
from galaxy_morphology.io.tables import write_parquet

SQL_FILE = "sql/gz1_photometry.sql"


class IngestError(RuntimeError):
    """The source could not deliver a complete, well-formed table."""


class PageError(IngestError):
    """One page came back unusable (HTTP error, truncated, malformed, out of order)."""


# errors worth another attempt of the same request
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (requests.RequestException, PageError)


def sql_template() -> str:
    """The page query, with SQL comments removed (SkyServer receives one line)."""
    text = files("galaxy_morphology.io").joinpath(SQL_FILE).read_text()
    lines = [line.split("--")[0].rstrip() for line in text.splitlines()]
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

    @classmethod
    def from_settings(cls, settings: Settings) -> SkyServerRequest:
        sky = settings.skyserver
        return cls(
            release=sky.release,
            page_size=sky.page_size,
            max_rows=sky.max_rows,
            timeout_seconds=sky.timeout_seconds,
            retries=sky.retries,
            backoff_seconds=sky.backoff_seconds,
        )

    def window(self, after_objid: int, rows: int) -> SkyServerRequest:
        """The same query limited to ``rows`` rows after ``after_objid`` (a monitoring batch)."""
        return replace(self, after_objid=after_objid, max_rows=rows)

    def key(self) -> str:
        """Hash of everything that decides the pages' content and boundaries."""
        parts = [sql_template(), self.release, self.page_size, self.max_rows, self.after_objid]
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def source(self) -> str:
        return f"skyserver:DR{self.release}"


Fetch = Callable[[str], str]


def astroquery_fetch(release: int, timeout: float, base_url: str | None = None) -> Fetch:
    """A function that sends SQL through astroquery's SDSS interface and returns the CSV text."""
    from astroquery.sdss import SDSS, conf

    def fetch(sql: str) -> str:
        with conf.set_temp("skyserver_baseurl", base_url or conf.skyserver_baseurl):
            response = SDSS.query_sql_async(sql, timeout=timeout, data_release=release, cache=False)
        if not response.ok:  # raise_for_status() would quote the whole URL, i.e. the query
            raise PageError(
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


def check_page(frame: pd.DataFrame, after: int, expected: int) -> pd.DataFrame:
    """Canonical columns, exactly ``expected`` rows, objids strictly increasing after ``after``."""
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


def fetch_page(fetch: Fetch, after: int, expected: int) -> pd.DataFrame:
    """One attempt at the page of ``expected`` rows after ``after``; raises on a bad answer."""
    return check_page(parse_csv_page(fetch(page_query(after, expected))), after, expected)


def fetch_count(fetch: Fetch, after: int) -> int:
    return int(parse_csv_page(fetch(count_query(after))).iloc[0, 0])


def page_sizes(total: int, page_size: int, max_rows: int | None) -> list[int]:
    """The number of rows of each page (one empty page for an empty result)."""
    rows = total if max_rows is None else min(total, max_rows)
    pages = max(1, math.ceil(rows / page_size))
    return [min(page_size, rows - number * page_size) for number in range(pages)]


@dataclass(frozen=True)
class PageCache:
    """``<cache_dir>/skyserver/<request key>/``: the row count, finished pages, the whole table.

    Every file is written atomically, so a rerun after an interruption resumes at the first
    missing page and never reads half a file.
    """

    folder: Path

    @classmethod
    def for_request(cls, cache_dir: Path, request: SkyServerRequest) -> PageCache:
        folder = Path(cache_dir) / "skyserver" / request.key()
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder)

    @property
    def table_path(self) -> Path:
        return self.folder / "table.parquet"

    def page_path(self, number: int) -> Path:
        return self.folder / f"page-{number:05d}.parquet"

    def count(self) -> int | None:
        manifest = self.folder / "manifest.json"
        return int(json.loads(manifest.read_text())["rows"]) if manifest.exists() else None

    def save_count(self, rows: int, release: int) -> None:
        (self.folder / "manifest.json").write_text(json.dumps({"rows": rows, "release": release}))

    def page(self, number: int) -> pd.DataFrame | None:
        path = self.page_path(number)
        return pd.read_parquet(path) if path.exists() else None

    def save_page(self, number: int, page: pd.DataFrame) -> None:
        write_parquet(page, self.page_path(number))

    def table(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.table_path) if self.table_path.exists() else None

    def save_table(self, pages: list[pd.DataFrame]) -> pd.DataFrame:
        table = pd.concat(pages, ignore_index=True) if pages else pd.DataFrame(columns=COLUMN_NAMES)
        write_parquet(table, self.table_path)
        return table
