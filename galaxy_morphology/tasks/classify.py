"""Batch classification: a catalogue file scored chunk by chunk into a Parquet file.

Rows are read ``chunk_rows`` at a time (memory stays bounded by the chunk size), checked
with the same rules as the scoring server, scored by the registered model, and written to
temporary files beside the outputs that replace them only once every chunk is done. Rows
that cannot be scored go to ``<output stem>.rejects.parquet`` with their reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from galaxy_morphology.core.scoring import OBJID, check_chunk, keep_unlabelled, required_columns
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import LoadedModel, Registry
from galaxy_morphology.io.tables import READ_ERRORS, atomic_paths, is_parquet, read_ahead, read_chunks

OUTPUT_SCHEMA = pa.schema(
    [
        ("objid", pa.int64()),
        ("label", pa.string()),
        ("p_elliptical", pa.float64()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema([("objid", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])


class ClassifyError(RuntimeError):
    """The file could not be classified; no output file was left behind."""


@dataclass
class ClassifyCounts:
    input_rows: int = 0
    skipped: int = 0  # labelled rows left out by only_unlabelled
    scored: int = 0
    rejected: int = 0
    chunks: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def rejects_path_for(output: Path) -> Path:
    name = output.name.removesuffix(".parquet")
    return output.with_name(f"{name}.rejects.parquet")


def predictions_table(good: pd.DataFrame, scored: pd.DataFrame, model: LoadedModel) -> pa.Table:
    rows = len(good)
    return pa.table(
        {
            "objid": pa.array(good[OBJID].to_numpy(), pa.int64()),
            "label": pa.array(np.asarray(scored["label"], dtype=object), pa.string()),
            "p_elliptical": pa.array(np.asarray(scored["p_elliptical"], dtype="float64"), pa.float64()),
            "model_name": pa.array([model.resolved.name] * rows, pa.string()),
            "model_version": pa.array([model.resolved.version] * rows, pa.string()),
        },
        schema=OUTPUT_SCHEMA,
    )


def _reading(chunks: Iterator[pd.DataFrame], path: Path) -> Iterator[pd.DataFrame]:
    """``chunks``, with a reading failure reported as ``ClassifyError`` naming the file."""
    rows = 0
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        except READ_ERRORS as error:
            raise ClassifyError(f"cannot read {path} (after {rows} rows): {error}") from error
        rows += len(chunk)
        yield chunk


def _chain(head: list[pd.DataFrame], rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield from head
    yield from rest


def classify_file(
    input_path: Path,
    output_path: Path,
    model: LoadedModel,
    chunk_rows: int,
    only_unlabelled: bool = False,
    log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> ClassifyCounts:
    """Score ``input_path`` into ``output_path`` and its rejects file, atomically."""
    log = log or logging.getLogger(__name__)
    output_path = Path(output_path)
    rejects_path = rejects_path_for(output_path)
    if not is_parquet(output_path):
        raise ClassifyError(f"output must be a .parquet file, got {output_path}")
    if Path(input_path).resolve() in (output_path.resolve(), rejects_path.resolve()):
        raise ClassifyError(f"output {output_path} would overwrite the input")
    chunks = read_chunks(
        Path(input_path),
        chunk_rows,
        required_columns(only_unlabelled, model.input_columns),
        text_columns=[OBJID],
    )
    try:  # header problems surface here, before any file is created
        first = next(chunks, None)
    except READ_ERRORS as error:
        raise ClassifyError(f"cannot read {input_path}: {error}") from error
    output_path.parent.mkdir(parents=True, exist_ok=True)
    counts = ClassifyCounts()
    # the writers close before atomic_paths publishes their files (exits run in reverse order)
    with (
        atomic_paths(rejects_path, output_path) as (temp_rejects, temp_output),
        pq.ParquetWriter(temp_output, OUTPUT_SCHEMA) as predictions,
        pq.ParquetWriter(temp_rejects, REJECTS_SCHEMA) as rejects,
    ):
        pending = [] if first is None else [first]
        # the next chunk is read (and decompressed, parsed) while this one is scored
        for chunk in read_ahead(_chain(pending, _reading(chunks, Path(input_path)))):
            counts.chunks += 1
            counts.input_rows += len(chunk)
            if only_unlabelled:
                kept = keep_unlabelled(chunk)
                counts.skipped += len(chunk) - len(kept)
                chunk = kept
            good, bad = check_chunk(chunk, model.input_columns)
            if len(good):
                predictions.write_table(predictions_table(good, model.score(good), model))
            if len(bad):
                rejects.write_table(pa.Table.from_pandas(bad, schema=REJECTS_SCHEMA, preserve_index=False))
                counts.reasons.update(bad["reason"].tolist())
            counts.scored += len(good)
            counts.rejected += len(bad)
            log.info(
                "chunk %d: %d rows done (%d classified, %d rejected%s)",
                counts.chunks,
                counts.input_rows,
                counts.scored,
                counts.rejected,
                f", {counts.skipped} labelled skipped" if only_unlabelled else "",
            )
    return counts


@task(name="load-model", cache_policy=NO_CACHE)
def load_model(registry: Registry, model_uri: str | None) -> LoadedModel:
    """``model_uri`` (default: the in-service alias) pinned to its version and loaded once."""
    return registry.load(registry.resolve(model_uri))


@task(name="classify-file", cache_policy=NO_CACHE)
def classify_file_task(
    input_path: Path, output_path: Path, model: LoadedModel, chunk_rows: int, only_unlabelled: bool
) -> ClassifyCounts:
    return classify_file(input_path, output_path, model, chunk_rows, only_unlabelled, run_logger())
