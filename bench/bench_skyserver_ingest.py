"""SkyServer ingest benchmark: the full GZ1 table's size through the stand-in, with faults.

Builds ``--rows`` zooSpec rows (the shared snapshot resampled with jitter, seeded, with
SkyServer's quirks) into the stand-in's SQLite tables, then ingests them through real astroquery
over loopback in pages of ``--page-size``: the count and each page a Prefect task run with
retries, one fault injected into every other page (HTTP 500 and 503, a line cut short, rows
missing, a dropped connection, a rate-limit refusal). Checks that the result is exactly what the
page query returns when run directly on the same tables, and that its per-stage counts equal
the stage-count query's. Prints the median of ``--repeats`` runs of each step.

Usage: python bench/bench_skyserver_ingest.py [--rows 700000] [--page-size 50000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from prefect.testing.utilities import prefect_test_harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import one_line
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
from tests.standin_skyserver import StandInSkyServer, fault_plan


def one_run(rows: int, page_size: int, plan: list[str | None], times: dict[str, list[float]]) -> str:
    """Build, load, query directly, ingest with faults, compare; returns a summary line."""
    started = time.perf_counter()
    tables = build_tables(rows, seed=0)
    times["build tables"].append(time.perf_counter() - started)
    started = time.perf_counter()
    server = StandInSkyServer(tables).start()
    times["load SQLite"].append(time.perf_counter() - started)
    try:
        started = time.perf_counter()
        want = server.query(page_query(-1, 10**9)).astype(DTYPES)[list(OUTPUT_COLUMNS)]
        times["direct query"].append(time.perf_counter() - started)
        server.inject(plan)
        request = SkyServerRequest(
            page_size=page_size,
            retries=2,
            backoff_seconds=0,
            min_interval_seconds=0,
            rate_limit_pause_seconds=0.1,
        )
        fetch = astroquery_fetch(request, server.base_url)
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            table, _ = fetch_skyserver(request, Path(cache), fetch)
            times["ingest"].append(time.perf_counter() - started)
        pd.testing.assert_frame_equal(table, want)
        counts = StageCounts.from_table(table)
        if counts != fetch_stage_counts(fetch):
            raise AssertionError("stage counts differ from the stage-count query's")
        faults = [entry.fault for entry in server.page_requests() if entry.fault]
        return (
            f"{len(server.page_requests())} page requests, faults {faults}; stage counts {counts.as_dict()}"
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=700_000)
    parser.add_argument("--page-size", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(one_line(), f"load average {os.getloadavg()[0]:.1f}")
    pages = -(-args.rows // args.page_size)
    times: dict[str, list[float]] = {"build tables": [], "load SQLite": [], "direct query": [], "ingest": []}
    cpu_started = time.process_time()
    with prefect_test_harness(server_startup_timeout=120):
        for _ in range(args.repeats):
            summary = one_run(args.rows, args.page_size, fault_plan(pages), times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.rows} zooSpec rows, pages of {args.page_size}: {pages} pages; {summary}")
    print("| step | median s | runs s |")
    print("|---|---:|---|")
    for step, values in times.items():
        runs = ", ".join(f"{value:.1f}" for value in values)
        print(f"| {step} | {statistics.median(values):.1f} | {runs} |")
    print(
        f"identical to the direct query and to the stage-count query: yes; peak memory {peak_mb:.0f} MB; "
        f"CPU time of this process {time.process_time() - cpu_started:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
