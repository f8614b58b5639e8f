"""Manual benchmark (not a test): wall time of the monitoring flow on 10k and 100k-row batches.

Batches are resampled (with replacement, seeded) from the GZ1 snapshot with a small
multiplicative jitter on the model's feature columns. Train a champion first, in a scratch
folder whose settings point at the snapshot, then run this from that folder:

    cd /tmp/bench
    sed 's#^  snapshot_path: .*#  snapshot_path: /work/shared/data/gz1_sdss_dr9_curtin_3976.csv.gz#' \
        /work/main/settings.yaml > settings.yaml
    /work/main/.venv/bin/galaxy train --quick --settings settings.yaml
    /work/main/.venv/bin/python /work/main/bench/bench_monitoring.py --settings settings.yaml
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from galaxy_morphology.core.schema import AXIS_RATIOS, FEATURE_COLUMNS

SNAPSHOT = Path("/work/shared/data/gz1_sdss_dr9_curtin_3976.csv.gz")


def resample(source: pd.DataFrame, n_rows: int, seed: int, jitter: float = 0.01) -> pd.DataFrame:
    """``n_rows`` rows drawn with replacement, features multiplied by 1 + N(0, jitter)."""
    rng = np.random.default_rng(seed)
    batch = source.iloc[rng.integers(0, len(source), n_rows)].reset_index(drop=True)
    for column in FEATURE_COLUMNS:
        values = batch[column].astype("float64")
        batch[column] = values * (1.0 + rng.normal(0.0, jitter, n_rows))
    for column in AXIS_RATIOS:
        batch[column] = batch[column].clip(0.01, 1.0)
    return batch


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", type=Path, default=Path("settings.yaml"))
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-batches"))
    args = parser.parse_args()

    from galaxy_morphology.flows.monitoring import monitoring_flow
    from galaxy_morphology.tasks.ingest import read_snapshot

    source = read_snapshot(args.snapshot)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in args.sizes:
        path = args.out / f"batch-{size}.parquet"
        resample(source, size, seed=size).to_parquet(path, index=False)
        times = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            result = monitoring_flow(batch_path=str(path), settings_file=str(args.settings))
            times.append(time.perf_counter() - started)
            print(f"{size:>7} rows, repeat {repeat + 1}: {times[-1]:.2f} s ({result.status})", flush=True)
        results[size] = statistics.median(times)
    print("\nmedian wall time of the monitoring flow:")
    for size, seconds in results.items():
        print(f"  {size:>7} rows: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
