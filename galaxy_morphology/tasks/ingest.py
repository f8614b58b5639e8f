"""Ingest tasks: the raw table from a snapshot file, or from SkyServer one page per task run.

Each SkyServer page is its own task run with Prefect retries and exponential backoff, so a
retried page shows in the UI; a finished page is cached and never fetched again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from galaxy_morphology.core.prepare import canonicalize
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.skyserver import (
    TRANSIENT_ERRORS,
    Fetch,
    IngestError,
    PageCache,
    SkyServerRequest,
    astroquery_fetch,
    fetch_count,
    fetch_page,
    page_sizes,
)
from galaxy_morphology.io.tables import read_table


def read_snapshot(path: Path) -> pd.DataFrame:
    """A snapshot file with its columns under their canonical names."""
    return canonicalize(read_table(path, what="snapshot"))


@task(name="ingest-snapshot", cache_policy=NO_CACHE)
def ingest_snapshot(path: Path) -> pd.DataFrame:
    frame = read_snapshot(path)
    run_logger().info("snapshot %s: %d rows", path, len(frame))
    return frame


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a SkyServer request only when another attempt can succeed."""
    return isinstance(state.data, TRANSIENT_ERRORS)


@task(name="count-skyserver-rows", cache_policy=NO_CACHE, retry_condition_fn=is_transient)
def count_rows(fetch: Fetch, after: int) -> int:
    return fetch_count(fetch, after)


@task(name="fetch-skyserver-page", cache_policy=NO_CACHE, retry_condition_fn=is_transient)
def fetch_page_task(fetch: Fetch, cache: PageCache, number: int, after: int, expected: int) -> pd.DataFrame:
    """Fetch, check and cache one page (idempotent: a retry asks for the same rows again)."""
    page = fetch_page(fetch, after, expected)
    cache.save_page(number, page)
    return page


def _retrying(what: Any, request: SkyServerRequest) -> Any:
    return what.with_options(
        retries=request.retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=request.backoff_seconds)
        if request.retries
        else 0,
    )


def _attempt(action: Any, what: str, request: SkyServerRequest, *args: Any) -> Any:
    try:
        return _retrying(action, request)(*args)
    except TRANSIENT_ERRORS as error:
        raise IngestError(f"{what} failed after {request.retries + 1} attempts: {error}") from error


def fetch_skyserver(request: SkyServerRequest, cache_dir: Path, fetch: Fetch) -> tuple[pd.DataFrame, Path]:
    """Page through the query, one task run per missing page; assemble when all are done."""
    log = run_logger()
    cache = PageCache.for_request(cache_dir, request)
    table = cache.table()
    if table is not None:
        log.info("SkyServer table already complete in cache: %s", cache.table_path)
        return table, cache.table_path
    total = cache.count()
    if total is None:
        total = _attempt(count_rows, "row count", request, fetch, request.after_objid)
        cache.save_count(total, request.release)
    sizes = page_sizes(total, request.page_size, request.max_rows)
    log.info(
        "SkyServer DR%d: %d rows in %d page(s) of %d", request.release, total, len(sizes), request.page_size
    )
    pages: list[pd.DataFrame] = []
    after = request.after_objid
    for number, expected in enumerate(sizes):
        page = cache.page(number)
        if page is None:
            label = f"page {number + 1}/{len(sizes)}"
            named = fetch_page_task.with_options(
                task_run_name=f"fetch-skyserver-{label.replace('/', '-of-')}"
            )
            page = _attempt(named, label, request, fetch, cache, number, after, expected)
        log.info("page %d/%d: %d rows", number + 1, len(sizes), len(page))
        pages.append(page)
        if len(page):
            after = int(page["objid"].iloc[-1])
    return cache.save_table(pages), cache.table_path


def ingest_skyserver(request: SkyServerRequest, cache_dir: Path, base_url: str | None = None) -> pd.DataFrame:
    """The whole query result (cached pages are reused)."""
    table, _ = fetch_skyserver(
        request, cache_dir, astroquery_fetch(request.release, request.timeout_seconds, base_url)
    )
    return table
