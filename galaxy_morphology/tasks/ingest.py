"""Ingest tasks: the raw table from a snapshot file, or from SkyServer one page per task run.

The row count and each SkyServer page are task runs with Prefect retries and exponential
backoff, so a retried page shows in the UI. Only failures another attempt can cure are retried
(``should_retry``): a lost connection, an HTTP 5xx, SkyServer's error page, a refusal for the
rate, a truncated or short page. A page that ran into SkyServer's 600 s limit, or a query it
refused, fails at once. A finished page is cached and never fetched again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from galaxy_morphology.core.prepare import canonicalize
from galaxy_morphology.core.progress import Counter
from galaxy_morphology.core.stages import StageCounts, stage_report, view_rows
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.skyserver import (
    Fetch,
    IngestError,
    PageCache,
    PageSpec,
    SkyServerError,
    SkyServerRequest,
    astroquery_fetch,
    count_rows,
    fetch_page,
    should_retry,
)
from galaxy_morphology.io.tables import read_table
from galaxy_morphology.tasks.progress import reporting


def read_snapshot(path: Path) -> pd.DataFrame:
    """A snapshot file with its columns under their canonical names."""
    return canonicalize(read_table(path, what="snapshot"))


@task(name="ingest-snapshot", cache_policy=NO_CACHE)
def ingest_snapshot(path: Path) -> pd.DataFrame:
    frame = read_snapshot(path)
    run_logger().info("snapshot %s: %d rows", path, len(frame))
    return frame


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry only what another attempt can cure."""
    return should_retry(state.data)


@task(name="count-skyserver-rows", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def count_task(fetch: Fetch, after: int) -> int:
    return count_rows(fetch, after)


@task(name="fetch-skyserver-page", cache_policy=NO_CACHE, retry_condition_fn=retry_if_transient)
def page_task(fetch: Fetch, spec: PageSpec, cache: PageCache) -> pd.DataFrame:
    """Fetch, check and cache one page (a retry asks for the same rows again)."""
    page = fetch_page(fetch, spec)
    cache.save_page(spec.number, page)
    return page


def _attempt(action: Any, what: str, request: SkyServerRequest, *args: Any) -> Any:
    delays = exponential_backoff(backoff_factor=request.backoff_seconds) if request.retries else 0
    try:
        return action.with_options(retries=request.retries, retry_delay_seconds=delays)(*args)
    except SkyServerError as error:
        if not should_retry(error):
            raise
        raise IngestError(f"{what} failed after {request.retries + 1} attempts: {error}") from error


def fetch_skyserver(request: SkyServerRequest, cache_dir: Path, fetch: Fetch) -> tuple[pd.DataFrame, Path]:
    """Count, then page through the query after the last finished page; assemble when all are done."""
    log = run_logger()
    cache = PageCache.for_request(cache_dir, request)
    table = cache.table()
    if table is not None:
        log.info("SkyServer table already complete in cache: %s (%d rows)", cache.table_path, len(table))
        return table, cache.table_path
    total = cache.count()
    if total is None:
        total = _attempt(count_task, "row count", request, fetch, request.after_specobjid)
        cache.save_count(total, request.release)
    target = total if request.max_rows is None else min(total, request.max_rows)
    pages = cache.pages()
    done = sum(len(page) for page in pages)
    after = int(pages[-1]["specobjid"].iloc[-1]) if done else request.after_specobjid
    planned = len(pages) + math.ceil(max(target - done, 0) / request.page_size)
    log.info(
        "SkyServer DR%d: %d rows after specobjid %d, %d to fetch in %d page(s) of %d (%d in cache)",
        request.release, target, request.after_specobjid, target - done, planned - len(pages),
        request.page_size, done,
    )  # fmt: skip
    counter = Counter()
    counter.plan(target, work=target - done)  # rows from the cache cost this run nothing
    counter.advance(done, work=0.0)
    with reporting(f"SkyServer DR{request.release}", "rows", counter, "skyserver-pages", None) as report:
        while done < target:
            spec = PageSpec(len(pages), after, min(request.page_size, target - done))
            label = f"page {spec.number + 1}/{planned}"
            named = page_task.with_options(
                task_run_name=f"fetch-skyserver-page-{spec.number + 1}-of-{planned}"
            )
            page = _attempt(named, label, request, fetch, spec, cache)
            pages.append(page)
            done += len(page)
            after = int(page["specobjid"].iloc[-1])
            log.info("%s: %d rows, specobjid up to %d", label, len(page), after)
            counter.advance(len(page))
            report.update()
    return cache.save_table(pages, target), cache.table_path


@task(name="record-skyserver-stages", cache_policy=NO_CACHE)
def record_stages(stages: dict[str, int]) -> None:
    """Log the rows of each join stage and publish them as a table artifact."""
    log = run_logger()
    for name, rows in stages.items():
        log.info("SkyServer %s: %d", name, rows)
    create_table_artifact(
        key="skyserver-stages",
        table=[{"stage": name, "rows": rows} for name, rows in stages.items()],
        description="SkyServer rows per stage: zooSpec, after each join, labelled; rows dropped per reason",
    )


@dataclass(frozen=True)
class SkyServerRows:
    table: pd.DataFrame  # the rows SkyServer's PhotoObj and SpecObj views keep, without join columns
    stages: dict[str, int]  # rows per join stage and dropped per reason (core/stages.py)
    path: Path  # the whole fetched table, every zooSpec row, in the page cache


def ingest_skyserver(
    request: SkyServerRequest, cache_dir: Path, base_url: str | None = None
) -> SkyServerRows:
    """The query's rows (cached pages are reused), filtered by the views' rules and counted."""
    raw, path = fetch_skyserver(request, cache_dir, astroquery_fetch(request, base_url))
    kept, dropped = view_rows(raw)
    stages = stage_report(StageCounts.from_table(raw), dropped)
    record_stages(stages)
    return SkyServerRows(kept, stages, path)
