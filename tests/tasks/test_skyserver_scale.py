"""A large SkyServer ingest with injected faults: exactly the rows the SQL gives, none lost, none twice.

CI runs it on 100,000 zooSpec rows in pages of 10,000. ``bench/bench_skyserver_ingest.py`` runs
the same at the size of GZ1 table 2 (700,000 rows in pages of 50,000) and times it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from galaxy_morphology.core.stages import StageCounts
from galaxy_morphology.io.skyserver import (
    DTYPES,
    OUTPUT_COLUMNS,
    SkyServerRequest,
    astroquery_fetch,
    fetch_stage_counts,
    page_query,
)
from galaxy_morphology.tasks.ingest import fetch_skyserver
from tests.skyserver_tables import build_tables
from tests.standin_skyserver import fault_plan, running

ROWS = 100_000
PAGE = 10_000


def test_large_ingest_with_faults_equals_the_direct_query(prefect_harness: None, tmp_path: Path) -> None:
    tables = build_tables(ROWS, seed=0)
    pages = -(-ROWS // PAGE)
    plan = fault_plan(pages)
    request = SkyServerRequest(
        page_size=PAGE, retries=2, backoff_seconds=0, min_interval_seconds=0, rate_limit_pause_seconds=0.1
    )
    with running(tables) as server:
        want = server.query(page_query(-1, 10**9)).astype(DTYPES)[list(OUTPUT_COLUMNS)]
        server.inject(plan)
        fetch = astroquery_fetch(request, server.base_url)
        table, _ = fetch_skyserver(request, tmp_path, fetch)
        faults = [entry.fault for entry in server.page_requests()]
        server_counts = fetch_stage_counts(fetch)
    assert [fault for fault in faults if fault] == [fault for fault in plan if fault]
    assert len(faults) == pages + pages // 2  # each faulty page asked twice, the others once
    pd.testing.assert_frame_equal(table, want)
    assert table["specobjid"].is_unique and len(table) == len(tables.zoo_spec) == ROWS
    assert StageCounts.from_table(table) == server_counts
    assert server_counts.distinct_objids < ROWS  # the objids shared by two GZ1 rows are all there
