"""Batch classification at scale: in-process predict, `galaxy classify` locally and on a LocalCluster.

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db .venv/bin/python bench/bench_classify.py \\
        --rows 700000 5000000 --repeats 3

For each size, the shared snapshot is resampled with seeded 1% jitter (bench/resample.py) and
written as a directory of Parquet parts of ``--part-rows`` rows. Then, in one run, median of
``--repeats`` each, interleaved (one round measures every variant once, so the machine's load
moves all of them alike):

- **in-process predict**: read the parts with pandas and call the champion's pyfunc ``predict``
  on all rows at once, in this (already warm) process: the floor with no framework at all;
- **local classify**: ``galaxy classify`` as a user runs it (a new process: imports, settings,
  model loading, a flow run on a running Prefect server, chunks, checks, Parquet output);
- **LocalCluster classify**: the same command with ``--dask-address`` of a LocalCluster of
  ``--workers`` single-threaded worker processes started once beforehand (a running cluster).

The fixed start-up is ``galaxy classify`` of 10 rows (median of the repeats): in this process
and on the running cluster with a running Prefect server, and in this process with Prefect's
temporary one. On a cluster the workers load the model (and keep it), the client only reads its
signature: the first run on the cluster, which pays the workers' loading, is shown apart. The
overhead ratio is (classify - fixed start-up) / in-process predict, each with its own start-up.
Single-threaded scoring speed (one core, one thread) gives the rows per second of one Dask worker
thread: the paper estimate for a real cluster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from distributed import LocalCluster
from threadpoolctl import threadpool_limits

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.machine import one_line  # noqa: E402
from bench.resample import SNAPSHOT, resample  # noqa: E402
from galaxy_morphology.core.prepare import check_rows  # noqa: E402
from galaxy_morphology.io.registry import Registry  # noqa: E402
from galaxy_morphology.io.tables import input_parts  # noqa: E402
from galaxy_morphology.io.tracking import Tracking  # noqa: E402
from galaxy_morphology.tasks.ingest import read_snapshot  # noqa: E402
from tests.servers import prefect_server  # noqa: E402


def write_parts(rows: int, folder: Path, part_rows: int, seed: int) -> Path:
    """``rows`` resampled rows as Parquet parts ``part.0.parquet``, ``part.1.parquet``, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = read_snapshot(SNAPSHOT)
    for number, start in enumerate(range(0, rows, part_rows)):
        size = min(part_rows, rows - start)
        part = resample(snapshot, size, seed=seed + number)
        part["objid"] += start  # ids unique over the parts
        part.to_parquet(folder / f"part.{number}.parquet", index=False)
    return folder


def in_process_predict(model: object, columns: list[str], source: Path, single_thread: bool = False) -> float:
    """Seconds to read every part, keep the rows the checks pass (the same numpy checks
    classify runs) and predict them all at once with the pyfunc."""
    began = time.perf_counter()
    frame = pd.concat([pd.read_parquet(part, columns=columns) for part in input_parts(source)])
    frame = frame[check_rows(frame, columns, check_flags=False).ok]
    if single_thread:
        with threadpool_limits(1):
            model.predict(frame)  # type: ignore[attr-defined]
    else:
        model.predict(frame)  # type: ignore[attr-defined]
    return time.perf_counter() - began


def timed(command: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return elapsed


def classify_command(source: Path, output: Path, model_uri: str, *extra: str) -> list[str]:
    galaxy = str(Path(sys.executable).parent / "galaxy")
    return [
        galaxy,
        "classify",
        "--input",
        str(source),
        "--output",
        str(output),
        "--model-uri",
        model_uri,
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    parser.add_argument("--model-uri", default="models:/galaxy-morphology@champion")
    parser.add_argument("--rows", type=int, nargs="+", default=[700_000, 5_000_000])
    parser.add_argument("--part-rows", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(one_line())

    registry = Registry(Tracking(args.tracking_uri), "galaxy-morphology", "champion")
    resolved = registry.resolve(args.model_uri)
    model = registry.load(resolved)
    columns = list(model.input_columns)
    print(f"model: {resolved.requested} -> {resolved.uri}; ", end="")
    print(f"{args.workers} workers x 1 thread; median of {args.repeats}")

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        keep = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"  # a loaded machine may need more
        env = {
            key: value for key, value in os.environ.items() if key == keep or not key.startswith("PREFECT_")
        }
        env.update(
            MLFLOW_TRACKING_URI=args.tracking_uri,
            PREFECT_HOME=str(work / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        tiny = write_parts(10, work / "tiny", 10, args.seed)
        temporary = [
            timed(classify_command(tiny, work / "tiny.parquet", args.model_uri), env)
            for _ in range(args.repeats)
        ]
        with (
            prefect_server(work) as server,
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
            ) as cluster,
        ):
            running = {**env, "PREFECT_API_URL": server["PREFECT_API_URL"]}
            dask = ("--dask-address", cluster.scheduler_address)
            tiny_run = classify_command(tiny, work / "tiny.parquet", args.model_uri)
            first_on_cluster = timed([*tiny_run, *dask], running)  # the workers load the model
            startups: dict[str, list[float]] = {"local": [], "cluster": []}
            for _ in range(args.repeats):
                startups["local"].append(timed(tiny_run, running))
                startups["cluster"].append(timed([*tiny_run, *dask], running))
            startup, cluster_startup = (statistics.median(startups[key]) for key in ("local", "cluster"))
            print("fixed start-up (10 rows), running Prefect server:")
            print(f"  local {startup:.1f} s ({', '.join(f'{value:.1f}' for value in startups['local'])})")
            print(
                f"  on the running cluster {cluster_startup:.1f} s "
                f"({', '.join(f'{value:.1f}' for value in startups['cluster'])}); "
                f"its first run, while the workers load the model: {first_on_cluster:.1f} s"
            )
            print(f"  local with Prefect's temporary server {statistics.median(temporary):.1f} s")
            print(
                "\n| rows | in-process predict | single thread | local classify | LocalCluster classify | "
                "local overhead | cluster overhead | rows/s per worker thread |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for rows in args.rows:
                source = write_parts(rows, work / f"parts-{rows}", args.part_rows, args.seed)
                timings: dict[str, list[float]] = {"predict": [], "local": [], "cluster": []}
                for _ in range(args.repeats):
                    timings["predict"].append(in_process_predict(model.model, columns, source))
                    output = work / "out.parquet"
                    timings["local"].append(timed(classify_command(source, output, args.model_uri), running))
                    timings["cluster"].append(
                        timed(classify_command(source, output, args.model_uri, *dask), running)
                    )
                    check = pd.read_parquet(output, columns=["input_row"])
                    assert len(check) + len(pd.read_parquet(work / "out.rejects.parquet")) == rows
                single = in_process_predict(model.model, columns, source, single_thread=True)
                predict, local, remote = (
                    statistics.median(timings[key]) for key in ("predict", "local", "cluster")
                )
                print(
                    f"| {rows:,} | {predict:.1f} s | {single:.1f} s | {local:.1f} s | {remote:.1f} s | "
                    f"{(local - startup) / predict:.2f}x | {(remote - cluster_startup) / predict:.2f}x | "
                    f"{rows / single:,.0f} |",
                    flush=True,
                )
                for key, values in timings.items():
                    print(f"  {rows:,} {key}: " + ", ".join(f"{value:.1f}" for value in values))
                shutil.rmtree(source)


if __name__ == "__main__":
    main()
