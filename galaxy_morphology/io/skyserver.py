"""SkyServer's SQL search through astroquery: the GZ1 query, one page, the page cache.

The query (``sql/gz1_photometry.sql``) returns one row per zooSpec row; pages follow zooSpec's
unique, clustered key ``specobjid`` (``WHERE zs.specobjid > last ORDER BY zs.specobjid``), so
two GZ1 rows of one objid are two rows, wherever a page boundary falls.

From the wire up:

- ``Fetch``: sends one SQL text and returns SkyServer's CSV text, or raises a
  ``SkyServerError`` saying what went wrong and whether another attempt can help
  (``should_retry``). ``astroquery_fetch`` is the real one: astroquery's
  ``SDSS.query_sql_async``, paced under SkyServer's 60 queries a minute, waiting at least
  SkyServer's own 600 s for an answer.
- ``fetch_page(fetch, spec)``: one page, parsed and checked; raises on any defect. The same
  ``PageSpec`` always sends the same SQL, so a retry asks for the same rows.
- ``PageCache``: the row count and every finished page as atomic files; a rerun resumes after
  the last finished page, whatever page size made it.

Paging (one Prefect task run per page, with retries) lives in ``tasks/ingest.py``.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

import pandas as pd
import requests

from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.settings import Settings
from galaxy_morphology.core.stages import StageCounts
from galaxy_morphology.io.tables import atomic_paths, write_parquet

PAGE_SQL = "sql/gz1_photometry.sql"
STAGE_COUNTS_SQL = "sql/gz1_stage_counts.sql"

SERVER_TIMEOUT_SECONDS = 600  # SkyServer's SQL search stops a query after 600 s
ROW_LIMIT = 500_000  # and returns at most 500,000 rows a query
QUERIES_PER_MINUTE = 60  # from one client

ID_COLUMNS = ("specobjid", "objid", "dr7objid")
COUNT_COLUMNS = ("galspec_row", "votes", "spiral", "elliptical", "uncertain")
NULLABLE_COLUMNS = ("photo_mode", "science_primary")  # NULL when the left join found no row
FLOAT_COLUMNS = (
    "ra",
    "dec",
    "redshift",
    "mag_u",
    "mag_g",
    "mag_r",
    "mag_i",
    "mag_z",
    "deVRad_r",
    "deVAB_r",
    "expRad_r",
    "expAB_r",
    "fracDeV_r",
    "petroR50_r",
    "petroR90_r",
    "lnLDeV_r",
    "lnLExp_r",
    "stellar_mass",
    "p_el_debiased",
    "p_cs_debiased",
)
DTYPES: dict[str, str] = {
    **dict.fromkeys(ID_COLUMNS, "int64"),
    **dict.fromkeys(COUNT_COLUMNS, "int64"),
    **dict.fromkeys(NULLABLE_COLUMNS, "Int64"),
    **dict.fromkeys(FLOAT_COLUMNS, "float64"),
}
# the page query's columns, in order
OUTPUT_COLUMNS: tuple[str, ...] = (
    "specobjid",
    "objid",
    "dr7objid",
    "photo_mode",
    "science_primary",
    "galspec_row",
    *FLOAT_COLUMNS[:-2],
    "votes",
    *FLOAT_COLUMNS[-2:],
    "spiral",
    "elliptical",
    "uncertain",
)


# --------------------------------------------------------------------------- errors


class IngestError(UserError, RuntimeError):
    """The source could not deliver a complete, well-formed table."""


class SkyServerError(IngestError):
    """SkyServer gave no usable answer; ``retryable`` says whether asking again can help."""

    retryable: ClassVar[bool] = True


class PageError(SkyServerError):
    """The answer arrived but is not a whole page: truncated, short, malformed or out of order."""


class ServerUnavailable(SkyServerError):
    """No usable answer: HTTP 5xx, connection lost, no answer in time, or SkyServer's error page."""


class RateLimited(SkyServerError):
    """SkyServer refused the query: more than 60 queries in a minute from this client."""


class ServerTimeout(SkyServerError):
    """The query ran past SkyServer's 600 s limit. Asking again would load the server for
    nothing: lower ``skyserver.page_size`` and rerun (the finished pages are kept)."""

    retryable = False


class QueryRefused(SkyServerError):
    """SkyServer refused the query itself (not a SELECT, TOP above its row limit, HTTP 4xx)."""

    retryable = False


def should_retry(error: BaseException) -> bool:
    """True for the failures another attempt can cure (the page task's retry condition)."""
    return isinstance(error, SkyServerError) and error.retryable


# --------------------------------------------------------------------------- SQL


def _template(name: str) -> str:
    """A SQL file without its comments (astroquery sends the query as one line)."""
    text = files("galaxy_morphology.io").joinpath(name).read_text()
    lines = [line.split("--")[0].rstrip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line.strip())


def page_query(after_specobjid: int, top: int) -> str:
    """The ``top`` rows after ``after_specobjid``, in specobjid order."""
    return _template(PAGE_SQL).format(
        top=f"TOP {top}", after_specobjid=after_specobjid, order_by="ORDER BY zs.specobjid"
    )


def count_query(after_specobjid: int = -1) -> str:
    """How many rows the page query has after ``after_specobjid`` (one column, ``n``)."""
    inner = _template(PAGE_SQL).format(top="", after_specobjid=after_specobjid, order_by="")
    return f"SELECT COUNT_BIG(*) AS n FROM ({inner}) AS q"


def stage_counts_query(after_specobjid: int = -1) -> str:
    """The per-stage counts of the rows after ``after_specobjid``, computed on the server."""
    return _template(STAGE_COUNTS_SQL).format(after_specobjid=after_specobjid)


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class SkyServerRequest:
    """What to ingest, how fast to ask, and how often to retry."""

    release: int = 17
    page_size: int = 50_000
    max_rows: int | None = None
    timeout_seconds: float = 660.0  # SkyServer's 600 s plus the transfer
    retries: int = 4
    backoff_seconds: float = 2.0
    min_interval_seconds: float = 1.5  # 40 queries a minute, under SkyServer's 60
    after_specobjid: int = -1  # a window: rows with a larger specobjid (monitoring batches)
    rate_limit_pause_seconds: float = 60.0  # nothing is sent this long after a rate refusal

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= ROW_LIMIT:
            raise ValueError(
                f"page_size must be 1..{ROW_LIMIT} (SkyServer's row limit), got {self.page_size}"
            )
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")

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
            min_interval_seconds=sky.min_interval_seconds,
        )

    def window(self, after_specobjid: int, rows: int) -> SkyServerRequest:
        """The same query limited to ``rows`` rows after ``after_specobjid`` (a monitoring batch)."""
        return replace(self, after_specobjid=after_specobjid, max_rows=rows)

    def key(self) -> str:
        """Hash of what decides the rows. Not the page size: pages of any size line up, since
        each starts after the previous page's last specobjid."""
        parts = [_template(PAGE_SQL), self.release, self.max_rows, self.after_specobjid]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def source(self) -> str:
        return f"skyserver:DR{self.release}"


# --------------------------------------------------------------------------- the wire

# Sends one SQL text and returns SkyServer's CSV text; raises a SkyServerError on anything else.
Fetch = Callable[[str], str]


class Pacer:
    """Spaces the starts of queries by ``interval`` seconds (thread-safe)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (after SkyServer refused a query for the rate)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


_PACERS: dict[str, Pacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(base_url: str, interval: float) -> Pacer:
    """One pacer per server in this process, whichever task or thread sends the query."""
    with _PACERS_LOCK:
        pacer = _PACERS.get(base_url)
        if pacer is None:
            pacer = _PACERS[base_url] = Pacer(interval)
        pacer.interval = interval
        return pacer


TAG = re.compile(r"<[^>]+>")
TIMEOUT_WORDS = re.compile(r"timeout expired|timeout period elapsed|timed out", re.IGNORECASE)


def _excerpt(text: str, limit: int = 300) -> str:
    plain = " ".join(html.unescape(TAG.sub(" ", text)).split())
    return plain[:limit]


def check_answer(status: int, text: str) -> str:
    """``text`` if it is a result table; else the ``SkyServerError`` that names the problem.

    SkyServer answers a failed query with HTTP 200 and an HTML "Skyserver Error" page, not a
    CSV; spExecuteSQL answers a refused one with a one-column ``error_message`` table.
    """
    if status == 429:
        raise RateLimited(f"HTTP 429: {_excerpt(text)}")
    if status >= 500:
        raise ServerUnavailable(f"HTTP {status}: {_excerpt(text)}")
    if status >= 400:
        raise QueryRefused(f"HTTP {status}: {_excerpt(text)}")
    if text.lstrip().startswith("<"):
        message = _excerpt(text)
        if TIMEOUT_WORDS.search(message):
            raise ServerTimeout(
                f"the query ran past SkyServer's {SERVER_TIMEOUT_SECONDS} s limit; lower "
                f"skyserver.page_size and rerun (finished pages are kept). SkyServer said: {message}"
            )
        raise ServerUnavailable(f"SkyServer answered with an error page: {message}")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    if lines and lines[0].strip() == "error_message":
        message = lines[1] if len(lines) > 1 else ""
        if "queries allowed per minute" in message:
            raise RateLimited(f"SkyServer refused the query for the rate: {message[:120]}")
        raise QueryRefused(f"SkyServer refused the query: {message[:300]}")
    return text


def astroquery_fetch(request: SkyServerRequest, base_url: str | None = None) -> Fetch:
    """Sends SQL through astroquery's SDSS interface, one query per ``min_interval_seconds``.

    The client waits ``timeout_seconds`` for an answer. After a refusal for the rate, nothing is
    sent for ``rate_limit_pause_seconds`` (SkyServer counts the queries of the last minute).
    """
    from astroquery.sdss import SDSS, conf

    url = base_url or conf.skyserver_baseurl
    pacer = pacer_for(url, request.min_interval_seconds)
    release, timeout = request.release, request.timeout_seconds

    def fetch(sql: str) -> str:
        pacer.wait()
        try:
            with conf.set_temp("skyserver_baseurl", url):
                response = SDSS.query_sql_async(sql, timeout=timeout, data_release=release, cache=False)
        except requests.Timeout as error:
            raise ServerUnavailable(f"no answer from SkyServer DR{release} within {timeout:g} s") from error
        except requests.RequestException as error:  # connection refused or broken mid-answer
            raise ServerUnavailable(f"SkyServer DR{release}: {type(error).__name__}: {error}") from error
        try:
            return check_answer(response.status_code, response.text)
        except RateLimited:
            pacer.hold(request.rate_limit_pause_seconds)
            raise

    return fetch


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class PageSpec:
    """Page ``number`` (from 0): the next ``rows`` rows after specobjid ``after``."""

    number: int
    after: int
    rows: int

    def sql(self) -> str:
        return page_query(self.after, self.rows)


def parse_page(text: str) -> pd.DataFrame:
    """SkyServer's CSV (``#Table1``, header, rows) as a typed frame; ``PageError`` if not whole."""
    if not text.endswith("\n"):
        raise PageError("the answer does not end with a newline: truncated")
    lines = text.split("\n", 2)
    if len(lines) < 3 or not lines[0].startswith("#"):
        raise PageError(f"not a SkyServer CSV table: {text[:80]!r}")
    header, body = lines[1].split(","), lines[2]
    if tuple(header) != OUTPUT_COLUMNS:
        differ = [
            f"{got!r} (expected {want!r})"
            for got, want in zip(header, OUTPUT_COLUMNS, strict=False)
            if got != want
        ]
        raise PageError(
            f"{len(header)} columns, expected {len(OUTPUT_COLUMNS)}; first difference: {differ[:1]}"
        )
    rows = body.count("\n")
    if body.count(",") != rows * (len(header) - 1):
        raise PageError("a row has fewer or more fields than the header: truncated or malformed")
    try:
        return pd.read_csv(io.StringIO(lines[1] + "\n" + body), dtype=DTYPES, na_values=[""])
    except (ValueError, pd.errors.ParserError) as error:
        raise PageError(f"malformed row: {error}") from error


def empty_page() -> pd.DataFrame:
    return parse_page("#Table1\n" + ",".join(OUTPUT_COLUMNS) + "\n")


def check_page(frame: pd.DataFrame, spec: PageSpec) -> pd.DataFrame:
    """``frame`` if it is exactly the page ``spec`` asked for; else ``PageError``."""
    if len(frame) != spec.rows:
        raise PageError(f"page {spec.number + 1} has {len(frame)} rows, expected {spec.rows}: truncated")
    keys = frame["specobjid"]
    if len(keys) and (
        int(keys.iloc[0]) <= spec.after or not keys.is_monotonic_increasing or keys.duplicated().any()
    ):
        raise PageError(f"page {spec.number + 1}: specobjids are not strictly increasing after {spec.after}")
    return frame


def fetch_page(fetch: Fetch, spec: PageSpec) -> pd.DataFrame:
    """One page, parsed and checked. Raises on a bad page; the same ``spec`` sends the same SQL."""
    return check_page(parse_page(fetch(spec.sql())), spec)


def _one_row(text: str, what: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.StringIO(text), comment="#")
    except (ValueError, pd.errors.ParserError) as error:
        raise PageError(f"the {what} came back malformed: {error}") from error
    if len(frame) != 1:
        raise PageError(f"the {what} came back with {len(frame)} rows, expected 1")
    return frame


def count_rows(fetch: Fetch, after: int) -> int:
    """The page query's row count after ``after`` (the first query of an ingest)."""
    frame = _one_row(fetch(count_query(after)), "row count")
    if list(frame.columns) != ["n"]:
        raise PageError(f"the row count came back as columns {list(frame.columns)}")
    return int(frame["n"].iloc[0])


def fetch_stage_counts(fetch: Fetch, after: int = -1) -> StageCounts:
    """The per-stage counts SkyServer computes for the rows after ``after``."""
    return StageCounts.from_row(_one_row(fetch(stage_counts_query(after)), "stage counts").iloc[0].to_dict())


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class PageCache:
    """``<cache_dir>/skyserver/<request key>/``: the row count, finished pages, the whole table.

    Every file is written atomically: a rerun after an interruption resumes after the last
    finished page and never reads half a file.
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
        with atomic_paths(self.folder / "manifest.json") as (temporary,):
            temporary.write_text(json.dumps({"rows": rows, "release": release}))

    def pages(self) -> list[pd.DataFrame]:
        """The finished pages, in order; they must be numbered 0, 1, 2, ... without a gap."""
        paths = sorted(self.folder.glob("page-*.parquet"))
        for number, path in enumerate(paths):
            if path != self.page_path(number):
                raise IngestError(f"page files in {self.folder} are not numbered without gaps: {path.name}")
        return [pd.read_parquet(path) for path in paths]

    def save_page(self, number: int, page: pd.DataFrame) -> None:
        write_parquet(page, self.page_path(number))

    def table(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.table_path) if self.table_path.exists() else None

    def save_table(self, pages: list[pd.DataFrame], rows: int) -> pd.DataFrame:
        """The pages as one table, kept only when it holds ``rows`` rows, each specobjid once."""
        table = pd.concat(pages, ignore_index=True) if pages else empty_page()
        keys = table["specobjid"]
        if len(table) != rows or not keys.is_monotonic_increasing or keys.duplicated().any():
            raise IngestError(
                f"assembled {len(table)} rows, expected {rows} with strictly increasing specobjids"
            )
        write_parquet(table, self.table_path)
        return table
