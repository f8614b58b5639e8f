"""Serving and batch-classification benchmark (run by hand, not in the tests).

    MLFLOW_TRACKING_URI=sqlite:////tmp/store/mlflow.db \\
        .venv/bin/python bench/bench_serving.py --rows 700000

Side by side, in one run, on the champion's own fitted pipeline: one-record latency
(p50/p99) of the project's server (``galaxy serve``: the registered pyfunc) and of MLflow's
stock server for the same pipeline saved with ``mlflow.sklearn`` (probabilities only, no
project checks), in interleaved rounds; in process, one record through the pyfunc's
``predict``, the pipeline's ``predict_proba`` alone and the row checks alone, interleaved
call by call. Then throughput with 1 and 8 concurrent clients, a 1,000-record request, and
``galaxy classify`` on a resampled, jittered copy of the shared snapshot. Prints a markdown
table with the machine's details and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import requests
from threadpoolctl import threadpool_limits

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.machine import machine  # noqa: E402
from galaxy_morphology.core.families import TRUSTED_TYPES  # noqa: E402
from galaxy_morphology.core.prepare import (  # noqa: E402
    canonicalize,
    check_rows,
    coerce_types,
    column_rules,
    model_input,
    usable_rows,
)
from galaxy_morphology.core.schema import COLUMN_NAMES, FEATURE_COLUMNS  # noqa: E402
from galaxy_morphology.io.registry import LoadedModel, Registry  # noqa: E402
from galaxy_morphology.io.tracking import Tracking  # noqa: E402
from galaxy_morphology.serving.app import fast_path  # noqa: E402
from galaxy_morphology.serving.server import (  # noqa: E402
    BIN_DIR,
    ScoringServer,
    free_port,
    serve_env,
    start_server,
    wait_until_ready,
)
from galaxy_morphology.tasks.classify import classify_file  # noqa: E402
from tests.servers import prefect_server  # noqa: E402

SNAPSHOT = REPO_ROOT.parent / "shared/data/gz1_sdss_dr9_curtin_3976.csv.gz"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def clean_rows(path: Path) -> pd.DataFrame:
    frame = coerce_types(canonicalize(pd.read_csv(path)))[list(COLUMN_NAMES)]
    return frame[check_rows(frame, FEATURE_COLUMNS, check_flags=False).ok].reset_index(drop=True)


def hammer(url: str, body: str, clients: int, seconds: float) -> tuple[list[float], float, int]:
    """``clients`` threads, each with its own session, posting ``body`` for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(slot: int) -> None:
        with requests.Session() as session:
            headers = {"Content-Type": "application/json"}
            session.post(url, data=body, headers=headers, timeout=30)  # warm the connection
            start_gate.wait()
            while time.perf_counter() < stop_at[0]:
                began = time.perf_counter()
                response = session.post(url, data=body, headers=headers, timeout=30)
                latencies[slot].append(time.perf_counter() - began)
                errors[slot] += response.status_code != 200

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start_gate.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = [value for slot in latencies for value in slot]
    return flat, len(flat) / elapsed, sum(errors)


def resampled(rows: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """``n_rows`` drawn with replacement, features jittered by ~1 % (seeded), fresh objids."""
    rng = np.random.default_rng(seed)
    sample = rows.iloc[rng.integers(0, len(rows), n_rows)].reset_index(drop=True)
    for name in FEATURE_COLUMNS:
        sample[name] = sample[name] * (1 + rng.normal(0, 0.01, n_rows))
    for name in ("deVAB_r", "expAB_r"):
        sample[name] = sample[name].clip(1e-3, 1.0)
    sample["objid"] = np.arange(n_rows, dtype="int64") + 1_237_000_000_000_000_000
    return sample


def sequential(url: str, body: str, requests_count: int) -> list[float]:
    """``requests_count`` one-at-a-time requests on one connection; latencies in seconds."""
    latencies = []
    with requests.Session() as session:
        headers = {"Content-Type": "application/json"}
        for _ in range(10):  # warm the connection and the server
            session.post(url, data=body, headers=headers, timeout=30).raise_for_status()
        for _ in range(requests_count):
            began = time.perf_counter()
            response = session.post(url, data=body, headers=headers, timeout=30)
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
    return latencies


def save_stock(model: LoadedModel, example: pd.DataFrame, path: Path) -> None:
    """The champion's fitted pipeline saved with ``mlflow.sklearn``: what a user would serve
    without the project (signature from the same columns, probabilities out, skops)."""
    import mlflow.sklearn

    pipeline = model.model.unwrap_python_model().pipeline
    mlflow.sklearn.save_model(
        pipeline,
        path,
        serialization_format="skops",
        skops_trusted_types=TRUSTED_TYPES,
        signature=mlflow.models.infer_signature(example, pipeline.predict_proba(example)),
        input_example=example,
        pyfunc_predict_fn="predict_proba",
    )


def start_stock(model_path: Path, tracking_uri: str, threads: int, log_path: Path) -> ScoringServer:
    """MLflow's own ``mlflow models serve`` of ``model_path``: what a user gets without the project."""
    port = free_port()
    command = [str(BIN_DIR / "mlflow"), "models", "serve", "-m", str(model_path), "--env-manager", "local"]
    log = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=serve_env(tracking_uri, threads),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = ScoringServer(process, f"http://127.0.0.1:{port}", str(model_path), log_path, log)
    try:
        wait_until_ready(server, 300)
    except BaseException:
        server.stop()
        raise
    return server


def spread(values: list[float], unit: str = "ms", scale: float = 1e3) -> str:
    """``median [min - max]`` of per-round values."""
    ordered = sorted(value * scale for value in values)
    return f"{statistics.median(ordered):.2f} {unit} [{ordered[0]:.2f} - {ordered[-1]:.2f}]"


def served_side_by_side(
    servers: dict[str, ScoringServer], body: str, rounds: int, requests_count: int
) -> list[tuple[str, str]]:
    """p50 and p99 of each server, rounds interleaved (the order alternates each round)."""
    p50: dict[str, list[float]] = {name: [] for name in servers}
    p99: dict[str, list[float]] = {name: [] for name in servers}
    names = list(servers)
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            latencies = sequential(servers[name].url + "/invocations", body, requests_count)
            p50[name].append(percentile(latencies, 50))
            p99[name].append(percentile(latencies, 99))
    span = f"median of {rounds} interleaved rounds of {requests_count} requests [min - max]"
    results = []
    for name in names:
        results.append((f"{name}, 1 record: p50, {span}", spread(p50[name])))
        results.append((f"{name}, 1 record: p99, {span}", spread(p99[name])))
    paired = [mine / stock for mine, stock in zip(p50[names[0]], p50[names[1]], strict=True)]
    results.append((f"p50 {names[0]} / {names[1]}, paired by round", spread(paired, "x", 1.0)))
    return results


def in_process(
    model: LoadedModel, stock: Any, record: pd.DataFrame, rounds: int, calls: int
) -> list[tuple[str, str]]:
    """One record: the pyfunc's ``predict`` (through MLflow's wrapper, and the project's class
    alone), the stock ``mlflow.sklearn`` pyfunc's ``predict`` of the same pipeline (through the
    same wrapper), the server's fast path (parsed request to answer bytes), the pipeline's
    ``predict_proba`` alone and the row checks alone, interleaved call by call; per round the
    median wall and CPU time."""
    python_model = model.model.unwrap_python_model()
    pipeline = python_model.pipeline
    columns = model.input_columns
    fast = fast_path(model.model)
    assert fast is not None and fast.enabled
    payload = {"dataframe_records": json.loads(record.to_json(orient="records"))}
    assert fast.answer("application/json", payload) is not None  # the fast path answers it
    values = model_input(record, columns)
    rules = column_rules(tuple(columns))
    cases = {
        "pyfunc predict": lambda: model.model.predict(record),
        "project pyfunc predict (its class, without MLflow's wrapper)": lambda: python_model.predict(
            None, record
        ),
        "server fast path (parsed request to answer bytes)": lambda: fast.answer("application/json", payload),
        "stock pyfunc predict (mlflow.sklearn, the same wrapper)": lambda: stock.predict(record),
        "pipeline predict_proba": lambda: pipeline.predict_proba(record),
        "row checks (prepare.model_input)": lambda: model_input(record, columns),
        "row checks on the float array (prepare.usable_rows)": lambda: usable_rows(values, rules),
    }
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():
        case()
    for _ in range(rounds):
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(calls):
            for name, case in cases.items():
                began, began_cpu = time.perf_counter(), time.thread_time()
                case()
                timings[name].append((time.perf_counter() - began, time.thread_time() - began_cpu))
        for name, pairs in timings.items():
            wall[name].append(statistics.median(pair[0] for pair in pairs))
            cpu[name].append(statistics.median(pair[1] for pair in pairs))
    span = f"median of {rounds} rounds of {calls} interleaved calls [min - max]"
    results = []
    for name in cases:
        results.append((f"in process, 1 record, {name}: wall, {span}", spread(wall[name])))
        results.append((f"in process, 1 record, {name}: CPU, {span}", spread(cpu[name])))
    alone = "pipeline predict_proba"
    pairs = [(name, alone) for name in list(cases)[:4]]
    pairs.append(("pyfunc predict", "stock pyfunc predict (mlflow.sklearn, the same wrapper)"))
    for clock, timed in (("wall", wall), ("CPU", cpu)):
        for name, other in pairs:
            ratios = [mine / theirs for mine, theirs in zip(timed[name], timed[other], strict=True)]
            shown = "predict_proba" if other == alone else other
            results.append((f"{name} / {shown} ({clock}), paired by round", spread(ratios, "x", 1.0)))
    return results


def median_run(command: list[str], env: dict[str, str], repeats: int) -> float:
    """Median wall time of ``command`` over ``repeats`` runs (each must succeed)."""
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        timings.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise SystemExit(f"{command[1]} failed:\n{done.stderr[-3000:]}")
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    parser.add_argument("--model-uri", default="models:/galaxy-morphology@champion")
    parser.add_argument("--data", type=Path, default=SNAPSHOT)
    parser.add_argument("--rows", type=int, default=700_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP/BLAS threads per server worker")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the side-by-side")
    parser.add_argument("--requests", type=int, default=300, help="one-record requests per server and round")
    parser.add_argument("--calls", type=int, default=300, help="in-process calls per case and round")
    parser.add_argument(
        "--latency-only", action="store_true", help="only the side-by-side and in-process figures"
    )
    args = parser.parse_args()

    results: list[tuple[str, str]] = []
    rows = clean_rows(args.data)
    one = json.dumps({"dataframe_records": json.loads(rows.head(1).to_json(orient="records"))})
    batch = json.dumps(
        {
            "dataframe_records": json.loads(
                rows.sample(1000, replace=True, random_state=1).to_json(orient="records")
            )
        }
    )

    registry = Registry(Tracking(args.tracking_uri), "galaxy-morphology", "champion")
    model = registry.load(registry.resolve(args.model_uri))
    record = rows.head(1)[list(model.input_columns)]
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        save_stock(model, rows.head(5)[list(model.input_columns)].reset_index(drop=True), work / "stock")
        servers = {
            "`galaxy serve` (project pyfunc)": start_server(
                model.resolved.uri,
                args.tracking_uri,
                threads=args.threads,
                log_path=work / "server.log",
                timeout=300,
            ),
            "stock `mlflow models serve` (mlflow.sklearn)": start_stock(
                work / "stock", args.tracking_uri, args.threads, work / "stock.log"
            ),
        }
        try:
            results += served_side_by_side(servers, one, args.rounds, args.requests)
        finally:
            for server in servers.values():
                server.stop()
        stock = mlflow.pyfunc.load_model(str(work / "stock"))
        with threadpool_limits(limits=args.threads):  # in process as in the servers' workers
            results += in_process(model, stock, record, args.rounds, args.calls)
        if args.latency_only:
            report(args, results, load_before)
            return

        server = start_server(
            args.model_uri,
            args.tracking_uri,
            workers=args.workers,
            threads=args.threads,
            log_path=work / "server.log",
            timeout=180,
        )
        try:
            url = server.url + "/invocations"
            for clients in (1, 8):
                # rounds spread over time: the host's noise moves a whole round, not single requests
                rounds = [hammer(url, one, clients, args.seconds) for _ in range(args.repeats)]
                p50s = sorted(percentile(latencies, 50) * 1e3 for latencies, _, _ in rounds)
                p99s = sorted(percentile(latencies, 99) * 1e3 for latencies, _, _ in rounds)
                rates = sorted(throughput for _, throughput, _ in rounds)
                errors = sum(count for _, _, count in rounds)
                span = f"median of {args.repeats} rounds of {args.seconds:g} s [min - max]"
                results += [
                    (
                        f"single record, {clients} client(s): p50, {span}",
                        f"{statistics.median(p50s):.2f} ms [{p50s[0]:.2f} - {p50s[-1]:.2f}]",
                    ),
                    (
                        f"single record, {clients} client(s): p99, {span}",
                        f"{statistics.median(p99s):.2f} ms [{p99s[0]:.2f} - {p99s[-1]:.2f}]",
                    ),
                    (
                        f"single record, {clients} client(s): throughput, {span}",
                        f"{statistics.median(rates):.0f} req/s [{rates[0]:.0f} - {rates[-1]:.0f}] "
                        f"({errors} errors)",
                    ),
                ]
            with requests.Session() as session:
                times = []
                for _ in range(20):
                    began = time.perf_counter()
                    response = session.post(
                        url, data=batch, headers={"Content-Type": "application/json"}, timeout=60
                    )
                    times.append(time.perf_counter() - began)
                    assert response.status_code == 200, response.text
            results.append(("1,000-record request: median", f"{statistics.median(times) * 1e3:.1f} ms"))
        finally:
            server.stop()

        began = time.perf_counter()
        big = resampled(rows, args.rows, args.seed)
        source = work / "catalogue.csv.gz"
        big.to_csv(source, index=False, compression={"method": "gzip", "compresslevel": 1})
        results.append((f"generate {args.rows:,} rows (csv.gz)", f"{time.perf_counter() - began:.1f} s"))

        timings = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            counts = classify_file(source, work / "pred.parquet", model, args.chunk_rows)
            timings.append(time.perf_counter() - began)
        elapsed = statistics.median(timings)
        results.append(
            (
                f"classify_file, {counts.input_rows:,} rows ({counts.rejected} rejected), median of "
                f"{args.repeats}",
                f"{elapsed:.1f} s ({counts.input_rows / elapsed:,.0f} rows/s)",
            )
        )

        settings = work / "settings.yaml"
        settings.write_text(f"classify:\n  chunk_rows: {args.chunk_rows}\n")
        command = [
            str(Path(sys.executable).parent / "galaxy"),
            *("classify", "--input", str(source), "--output", str(work / "cli.parquet")),
            *("--model-uri", args.model_uri, "--settings", str(settings)),
        ]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_API", "PREFECT_HOME"))
        }
        env.update(
            MLFLOW_TRACKING_URI=args.tracking_uri,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_HOME=str(work / "prefect-home"),
        )
        elapsed = median_run(command, env, args.repeats)
        results.append(
            (
                f"`galaxy classify` end to end, {args.rows:,} rows, Prefect's temporary server "
                f"(median of {args.repeats})",
                f"{elapsed:.1f} s ({args.rows / elapsed:,.0f} rows/s)",
            )
        )
        with prefect_server(work) as server:
            elapsed = median_run(command, {**env, "PREFECT_API_URL": server["PREFECT_API_URL"]}, args.repeats)
        results.append(
            (
                f"`galaxy classify` end to end, {args.rows:,} rows, running Prefect server "
                f"(median of {args.repeats})",
                f"{elapsed:.1f} s ({args.rows / elapsed:,.0f} rows/s)",
            )
        )

    report(args, results, load_before)


def report(args: argparse.Namespace, results: list[tuple[str, str]], load_before: tuple[float, ...]) -> None:
    print("| machine | |\n|---|---|")
    for key, value in machine().items():
        print(f"| {key} | {value} |")
    before = " / ".join(f"{value:.1f}" for value in load_before)
    after = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"| load average (1/5/15 min), start / end | {before} / {after} |")
    print(f"| server workers | {args.workers} |")
    print(f"| threads per worker (and in process) | {args.threads} |")
    print("\n| measurement | value |\n|---|---:|")
    for key, value in results:
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
