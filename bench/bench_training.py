"""Training benchmark: wall time, peak memory and winner quality of `galaxy train` runs.

Each configuration runs the real CLI in a subprocess with its own MLflow store, timed by
/usr/bin/time. Usage: python bench/bench_training.py [--rows 0 100000 250000] [--configs ...]
(0 rows = the shared snapshot itself; other sizes are resampled from it with jitter).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import one_line
from bench.resample import SNAPSHOT, resample
from galaxy_morphology.tasks.ingest import read_snapshot

BIN = Path(sys.executable).parent
CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "halving": {"GALAXY_TRAINING__SEARCH": "halving"},
    "reference": {  # the reference study's recipe: random forest, RandomizedSearchCV, 10-fold
        "GALAXY_TRAINING__FAMILIES": '["random_forest"]',
        "GALAXY_TRAINING__ENSEMBLE": "false",
        "GALAXY_TRAINING__SEARCH": "random",
    },
}


def run(config: str, snapshot: Path, folder: Path) -> dict[str, float | str]:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {
        **os.environ,
        **CONFIGS[config],
        "MLFLOW_TRACKING_URI": uri,
        "GALAXY_MLFLOW__ARTIFACT_ROOT": str(folder / "artifacts"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "PEAK_KB %M", str(BIN / "galaxy"), "train", "--snapshot", str(snapshot)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
    peak_kb = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_KB"))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("galaxy-morphology")
    parent = client.search_runs(
        [experiment.experiment_id], filter_string="tags.galaxy.flow = 'training'", max_results=1
    )[0]
    winner = parent.data.tags["galaxy.winner"]
    child = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.mlflow.runName = '{winner}'"
        ),
    )[0]
    return {
        "config": config,
        "winner": winner,
        "wall_s": wall,
        "peak_mb": peak_kb / 1024,
        "val_f1_macro": child.data.metrics["val_f1_macro"],
        "cv_f1_macro": child.data.metrics["cv_f1_macro_mean"],
        "test_f1_macro": parent.data.metrics["test_f1_macro"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    print(one_line())
    print("| rows | config | winner | wall s | peak MB | CV macro F1 | val macro F1 | test macro F1 |")
    print("|---|---|---|---|---|---|---|---|")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if rows:
                snapshot = folder / f"resampled-{rows}.parquet"
                resample(read_snapshot(SNAPSHOT), rows, seed=0).to_parquet(snapshot, index=False)
            else:
                snapshot = SNAPSHOT
            for config in args.configs:
                run_folder = folder / config
                run_folder.mkdir()
                result = run(config, snapshot, run_folder)
                print(
                    f"| {rows or 'snapshot 3,976'} | {config} | {result['winner']} | "
                    f"{result['wall_s']:.0f} | "
                    f"{result['peak_mb']:.0f} | {result['cv_f1_macro']:.4f} | {result['val_f1_macro']:.4f} | "
                    f"{result['test_f1_macro']:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
