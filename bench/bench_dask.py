"""Tuning benchmark: the same searches run locally and on a Dask LocalCluster.

Resamples the shared snapshot (jittered, seeded) to ``--rows`` rows, prepares it exactly as the
data flow does (validate, clean, label, split), then tunes each family twice with the same
budget and seed: joblib's local workers (``training.n_jobs``, -1 by default) and joblib's
Dask backend on a LocalCluster of ``--workers`` single-threaded worker processes. Prints wall
times and whether the two searches agree (best parameters and CV score).

Usage: python bench/bench_dask.py [--rows 250000] [--families ...] [--search halving]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from distributed import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import one_line
from bench.resample import SNAPSHOT, resample
from galaxy_morphology.core.families import FAMILIES
from galaxy_morphology.core.prepare import clean, label, split, validate_raw
from galaxy_morphology.core.settings import load_settings
from galaxy_morphology.core.training import tune
from galaxy_morphology.flows.training import search_budget
from galaxy_morphology.io.cluster import parallel_backend
from galaxy_morphology.tasks.ingest import read_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--search", default="halving", choices=["random", "halving"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = load_settings({"training": {"search": args.search}})
    training = settings.training
    print(one_line())

    kept, _ = clean(validate_raw(resample(read_snapshot(SNAPSHOT), args.rows, seed=0)))
    labelled, _ = label(kept, settings.labels.rule, settings.labels.threshold)
    part = settings.split
    train = split(labelled, part.train, part.validation, part.test, part.seed).train
    print(f"{args.rows} resampled rows -> {len(train)} training rows; search {args.search}, ", end="")
    print(f"{training.n_iter} candidates, {training.cv_folds}-fold")

    local_budget = replace(search_budget(settings, quick=False), dask_address=None)
    print(f"| family | local s | LocalCluster ({args.workers} workers) s | ratio | same result |")
    print("|---|---:|---:|---:|---|")
    totals = [0.0, 0.0]
    with LocalCluster(
        n_workers=args.workers, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        for family in args.families:
            started = time.perf_counter()
            local = tune(family, train, local_budget)
            local_s = time.perf_counter() - started
            started = time.perf_counter()
            with parallel_backend(cluster.scheduler_address):
                remote = tune(family, train, local_budget)
            remote_s = time.perf_counter() - started
            same = local.best_params == remote.best_params and abs(local.cv_mean - remote.cv_mean) < 1e-12
            totals[0] += local_s
            totals[1] += remote_s
            print(
                f"| {family} | {local_s:.0f} | {remote_s:.0f} | {remote_s / local_s:.2f} | "
                f"{'yes' if same else 'NO'} |",
                flush=True,
            )
    print(f"| all | {totals[0]:.0f} | {totals[1]:.0f} | {totals[1] / totals[0]:.2f} | |")


if __name__ == "__main__":
    main()
