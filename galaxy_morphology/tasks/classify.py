"""Batch classification: a catalogue (one file, or a directory or glob of parts) into Parquet.

Rows are read ``chunk_rows`` at a time (memory stays bounded by the chunk size), checked
with the same rules as the scoring server and scored by the registered model: in this
process, or, with a Dask scheduler's address, on the cluster's workers (each loads the
model once by its pinned version). Either way the chunks come back in input order and
are written here, to temporary files beside the outputs that replace them only once every
chunk is done: a failure anywhere publishes neither file. Rows that cannot be scored go
to ``<output stem>.rejects.parquet`` with their reason. Every row of both files carries
its ``input_row`` and the pass-through columns, so the outputs join back to the input.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from threadpoolctl import threadpool_limits

from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.core.scoring import (
    ID_COLUMNS,
    INPUT_ROW,
    OPTIONAL,
    PassThrough,
    check_chunk,
    keep_unlabelled,
    kind_of,
    required_columns,
    split_optional,
)
from galaxy_morphology.io.cluster import ClusterError, ordered_map
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import DescribedModel, LoadedModel, Registry, ResolvedModel
from galaxy_morphology.io.tables import (
    READ_ERRORS,
    TableError,
    atomic_paths,
    input_parts,
    is_parquet,
    present_columns,
    read_ahead,
    read_chunks,
    remove_stale_temporaries,
)
from galaxy_morphology.io.tracking import Tracking

ARROW_TYPES = {
    "id": pa.int64(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "text": pa.string(),
}
SCORE_FIELDS = [
    pa.field("label", pa.string()),
    pa.field("p_elliptical", pa.float64()),
    pa.field("model_name", pa.string()),
    pa.field("model_version", pa.string()),
]
REJECT_FIELDS = [pa.field("reason", pa.string()), pa.field("detail", pa.string())]

Log = logging.Logger | logging.LoggerAdapter[Any]


class ClassifyError(UserError, RuntimeError):
    """The input could not be classified; no output file was published."""


@dataclass(frozen=True)
class Layout:
    """What every chunk of one run becomes; sent with each chunk to a worker."""

    input_columns: tuple[str, ...]
    pass_through: tuple[PassThrough, ...]
    only_unlabelled: bool
    model_name: str
    model_version: str

    def _carried(self) -> list[pa.Field]:
        return [pa.field(INPUT_ROW, pa.int64())] + [
            pa.field(column.name, ARROW_TYPES[column.kind]) for column in self.pass_through
        ]

    def predictions_schema(self) -> pa.Schema:
        return pa.schema(self._carried() + SCORE_FIELDS)

    def rejects_schema(self) -> pa.Schema:
        return pa.schema(self._carried() + REJECT_FIELDS)


@dataclass(frozen=True)
class ModelSource:
    """Where a worker loads the model from: the tracking store and the pinned version's URI."""

    tracking_uri: str
    resolved: ResolvedModel


@dataclass
class Scored:
    """One chunk's outcome."""

    predictions: pa.Table
    rejects: pa.Table
    rows: int
    skipped: int
    reasons: Counter[str]
    done: float  # fraction of the whole input read once this chunk is


@dataclass
class ClassifyCounts:
    input_rows: int = 0
    skipped: int = 0  # labelled rows left out by only_unlabelled
    scored: int = 0
    rejected: int = 0
    chunks: int = 0
    parts: int = 0
    engine: str = "local"
    carried: tuple[str, ...] = ()  # the pass-through columns the outputs carry
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, scored: Scored) -> None:
        self.chunks += 1
        self.input_rows += scored.rows
        self.skipped += scored.skipped
        self.scored += scored.predictions.num_rows
        self.rejected += scored.rejects.num_rows
        self.reasons.update(scored.reasons)


@dataclass(frozen=True)
class Chunk:
    """Rows ``first_row`` onwards of the input, read from ``part``."""

    part: Path
    first_row: int
    frame: pd.DataFrame
    done: float  # fraction of the whole input read once this chunk is


def rejects_path_for(output: Path) -> Path:
    name = output.name.removesuffix(".parquet")
    return output.with_name(f"{name}.rejects.parquet")


def score_chunk(chunk: Chunk, layout: Layout, model: LoadedModel) -> Scored:
    """Check, score and tabulate one chunk (the same function in this process or on a worker)."""
    frame = chunk.frame
    rows = len(frame)
    frame = frame.assign(**{INPUT_ROW: np.arange(chunk.first_row, chunk.first_row + rows, dtype="int64")})
    skipped = 0
    if layout.only_unlabelled:
        kept = keep_unlabelled(frame)
        skipped, frame = rows - len(kept), kept
    carried, features, bad = check_chunk(frame, layout.input_columns, layout.pass_through)
    predictions = layout.predictions_schema().empty_table()
    if len(features):
        scores = model.score(features)
        predictions = pa.Table.from_pandas(
            carried.assign(
                label=np.asarray(scores["label"], dtype=object),
                p_elliptical=np.asarray(scores["p_elliptical"], dtype="float64"),
                model_name=layout.model_name,
                model_version=layout.model_version,
            ),
            schema=layout.predictions_schema(),
            preserve_index=False,
        )
    rejects = pa.Table.from_pandas(bad, schema=layout.rejects_schema(), preserve_index=False)
    return Scored(predictions, rejects, rows, skipped, Counter(bad["reason"].tolist()), chunk.done)


@functools.lru_cache(maxsize=4)
def _worker_model(source: ModelSource) -> LoadedModel:
    """The model, loaded once per worker process and kept for the next runs on that worker."""
    # a pinned models:/<name>/<version> URI is loaded as it is: no alias is looked up
    registry = Registry(Tracking(source.tracking_uri), source.resolved.name, alias="")
    return registry.load(source.resolved)


def load_on_worker(source: ModelSource) -> None:
    """Load the model on a worker before its first chunk (``ordered_map``'s setup): a model
    that cannot load there fails the run before any chunk is sent."""
    _worker_model(source)


def absolute_tracking_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute: a worker's folder may differ from ours."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri


def score_chunk_remote(chunk: Chunk, layout: Layout, source: ModelSource) -> Scored:
    """``score_chunk`` on a Dask worker, with the model it loads (once) from the registry, and
    one OpenMP/BLAS thread: the worker's task threads are the parallelism."""
    with threadpool_limits(1):
        return score_chunk(chunk, layout, _worker_model(source))


def _layout(
    first: pd.DataFrame,
    model: LoadedModel | DescribedModel,
    pass_through: Sequence[str],
    only_unlabelled: bool,
) -> Layout:
    carried = tuple(PassThrough(name, kind_of(name, first[name])) for name in pass_through)
    resolved = model.resolved
    return Layout(tuple(model.input_columns), carried, only_unlabelled, resolved.name, resolved.version or "")


def _chunks(parts: Sequence[Path], chunk_rows: int, columns: Sequence[str]) -> Iterator[Chunk]:
    """The chunks of every part in order, numbered over the whole input; errors name the part."""
    sizes = [max(part.stat().st_size, 1) for part in parts]
    total, before, row = float(sum(sizes)), 0.0, 0
    text = [name for name in columns if name in ID_COLUMNS]
    for part, size in zip(parts, sizes, strict=True):
        reading = read_chunks(part, chunk_rows, columns, text_columns=text)
        while True:
            try:
                frame, fraction = next(reading)
            except StopIteration:
                break
            except SchemaError as error:
                raise SchemaError(f"{part}: {error}") from error
            except READ_ERRORS as error:
                raise ClassifyError(f"cannot read {part} (after {row} rows): {_describe(error)}") from error
            yield Chunk(part, row, frame, (before + fraction * size) / total)
            row += len(frame)
        before += size


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, pd.errors.EmptyDataError):
        return f"the file is empty ({text})"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class Plan:
    parts: list[Path]
    columns: list[str]  # read from every part
    first: Chunk | None
    rest: Iterator[Chunk]


def plan(
    source: Path | str,
    model: LoadedModel | DescribedModel,
    chunk_rows: int,
    pass_through: Sequence[str],
    only_unlabelled: bool,
) -> tuple[Plan, list[str]]:
    """The parts, the columns to read and the first chunk: every header problem surfaces here."""
    try:
        parts = input_parts(source)
    except TableError as error:
        raise ClassifyError(str(error)) from error
    _, optional = split_optional(pass_through)
    try:
        present = set(present_columns(parts[0], optional))
    except READ_ERRORS as error:
        raise ClassifyError(f"cannot read {parts[0]}: {_describe(error)}") from error
    names = [name.removesuffix(OPTIONAL) for name in pass_through]
    carried = [name for name in dict.fromkeys(names) if name not in optional or name in present]
    columns = required_columns(only_unlabelled, model.input_columns, carried)
    chunks = _chunks(parts, chunk_rows, columns)
    first = next(chunks, None)
    return Plan(parts, columns, first, chunks), carried


def _check_outputs(source: Path | str, output: Path, rejects: Path) -> None:
    if not is_parquet(output):
        raise ClassifyError(f"output must be a .parquet file, got {output}")
    for path in (output, rejects):
        if path.is_dir():
            raise ClassifyError(f"output {path} is a directory: give a file name")
    inputs = {part.resolve() for part in input_parts(source)} if Path(source).exists() else set()
    if {output.resolve(), rejects.resolve()} & inputs:
        raise ClassifyError(f"output {output} would overwrite the input")


def _chain(first: Chunk | None, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    if first is not None:
        yield first
    yield from rest


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns})


def _where(chunk: Chunk) -> str:
    return f"rows {chunk.first_row}-{chunk.first_row + len(chunk.frame) - 1} ({chunk.part.name})"


def _local(chunks: Iterator[Chunk], layout: Layout, model: LoadedModel | DescribedModel) -> Iterator[Scored]:
    """The chunks scored in this process, in input order."""
    if not isinstance(model, LoadedModel):
        raise TypeError("scoring in this process needs the loaded model, not its description")
    return (score_chunk(chunk, layout, model) for chunk in chunks)


def _remote(chunks: Iterator[Chunk], layout: Layout, source: ModelSource, address: str) -> Iterator[Scored]:
    """The chunks scored on the cluster at ``address``, in input order; every worker loads the
    model first."""
    ready = functools.partial(load_on_worker, source)
    try:
        yield from ordered_map(
            address, score_chunk_remote, chunks, layout, source, describe=_where, setup=ready
        )
    except ClusterError as error:
        raise ClassifyError(str(error)) from error


def _log_chunk(log: Log, counts: ClassifyCounts, done: float, elapsed: float, only_unlabelled: bool) -> None:
    remaining = f", about {elapsed * (1 - done) / done:.0f} s to go" if 0 < done < 1 else ""
    log.info(
        "chunk %d: %d rows done (%d classified, %d rejected%s), %.0f%% of the input in %.0f s%s",
        counts.chunks,
        counts.input_rows,
        counts.scored,
        counts.rejected,
        f", {counts.skipped} labelled skipped" if only_unlabelled else "",
        100 * done,
        elapsed,
        remaining,
    )


ProgressHook = Callable[[ClassifyCounts, float], None]


def classify_file(
    input_path: Path | str,
    output_path: Path,
    model: LoadedModel | DescribedModel,
    chunk_rows: int,
    only_unlabelled: bool = False,
    log: Log | None = None,
    pass_through: Sequence[str] = ("objid",),
    dask_address: str | None = None,
    tracking_uri: str | None = None,
    progress: ProgressHook | None = None,
) -> ClassifyCounts:
    """Score the input into ``output_path`` and its rejects file; both are published or neither.

    In this process ``model`` is the loaded model; with ``dask_address`` the workers load it
    themselves, and its description (version and columns) is enough here.
    """
    log = log or logging.getLogger(__name__)
    output_path = Path(output_path)
    rejects_path = rejects_path_for(output_path)
    _check_outputs(input_path, output_path, rejects_path)
    work, carried = plan(input_path, model, chunk_rows, pass_through, only_unlabelled)
    first = work.first.frame if work.first is not None else _empty(work.columns)
    layout = _layout(first, model, carried, only_unlabelled)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    for path in (output_path, rejects_path):
        for stale in remove_stale_temporaries(path):
            log.info("removed %s, left by a classify run that was killed", stale)
    counts = ClassifyCounts(parts=len(work.parts), engine=dask_address or "local", carried=tuple(carried))
    chunks = read_ahead(_chain(work.first, work.rest))
    if dask_address is None:
        results: Iterator[Scored] = _local(chunks, layout, model)
    else:
        source = ModelSource(absolute_tracking_uri(tracking_uri or ""), model.resolved)
        results = _remote(chunks, layout, source, dask_address)
    started = time.monotonic()
    try:
        # the writers close before atomic_paths publishes their files (exits run in reverse order)
        with (
            atomic_paths(rejects_path, output_path) as (temp_rejects, temp_output),
            pq.ParquetWriter(temp_output, layout.predictions_schema()) as predictions,
            pq.ParquetWriter(temp_rejects, layout.rejects_schema()) as rejects,
        ):
            for scored in results:
                predictions.write_table(scored.predictions)
                rejects.write_table(scored.rejects)
                counts.add(scored)
                _log_chunk(log, counts, scored.done, time.monotonic() - started, only_unlabelled)
                if progress is not None:
                    progress(counts, scored.done)
    except OSError as error:
        raise ClassifyError(f"cannot write {output_path} and {rejects_path.name}: {error}") from error
    return counts


class ProgressArtifact:
    """The run's progress as a Prefect progress artifact (the flow run's Artifacts tab)."""

    def __init__(self, description: str) -> None:
        # called from synchronous code, Prefect's dual sync/async function returns the id itself
        self.artifact_id = cast(
            UUID, create_progress_artifact(0.0, key="classify-progress", description=description)
        )
        self.shown = 0.0

    def __call__(self, counts: ClassifyCounts, done: float) -> None:
        percent = round(100 * done, 1)
        if percent > self.shown:
            update_progress_artifact(self.artifact_id, percent)
            self.shown = percent


@task(name="load-model", cache_policy=NO_CACHE)
def load_model(registry: Registry, model_uri: str | None) -> LoadedModel:
    """``model_uri`` (default: the in-service alias) pinned to its version and loaded once."""
    return registry.load(registry.resolve(model_uri))


@task(name="describe-model", cache_policy=NO_CACHE)
def describe_model(registry: Registry, model_uri: str | None) -> DescribedModel:
    """``model_uri`` pinned to its version, with its input columns: for a cluster's workers to load."""
    return registry.describe(registry.resolve(model_uri))


@task(name="classify-file", cache_policy=NO_CACHE)
def classify_file_task(
    input_path: str,
    output_path: Path,
    model: LoadedModel | DescribedModel,
    chunk_rows: int,
    only_unlabelled: bool,
    pass_through: Sequence[str],
    dask_address: str | None,
    tracking_uri: str,
) -> ClassifyCounts:
    where = f"on the Dask cluster at {dask_address}" if dask_address else "in this process"
    progress = ProgressArtifact(f"Classifying {input_path} {where}")
    return classify_file(
        input_path,
        output_path,
        model,
        chunk_rows,
        only_unlabelled,
        run_logger(),
        pass_through,
        dask_address,
        tracking_uri,
        progress,
    )
