"""Scale-test data: the real snapshot's rows resampled with replacement and jittered (seeded).

Such data measures speed and memory, never model quality.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_morphology.core.schema import FLAGS
from galaxy_morphology.tasks.ingest import read_snapshot

SNAPSHOT = Path(__file__).resolve().parents[1].parent / "shared/data/gz1_sdss_dr9_curtin_3976.csv.gz"
JITTER = 0.01  # relative standard deviation applied to every float column


def resample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sample = frame.iloc[rng.integers(0, len(frame), size=rows)].reset_index(drop=True)
    for name in sample.columns:
        if name in FLAGS or name in ("objid", "votes") or not pd.api.types.is_float_dtype(sample[name]):
            continue
        values = sample[name].to_numpy()
        keep = np.isclose(values, -9999.0) | (values == 0)  # keep sentinels and zeros as found
        noise = rng.normal(1.0, JITTER, size=rows)
        jittered = np.where(keep, values, values * noise)
        if name in ("deVAB_r", "expAB_r"):
            jittered = np.where(keep, values, np.clip(jittered, 1e-3, 1.0))
        sample[name] = jittered
    sample["objid"] = np.arange(1, rows + 1, dtype="int64") + 1_237_000_000_000_000_000
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", type=int)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    resample(read_snapshot(SNAPSHOT), args.rows, args.seed).to_parquet(args.output, index=False)


if __name__ == "__main__":
    main()
