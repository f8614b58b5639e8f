"""Batch scoring: classify a catalogue file chunk by chunk into a Parquet file.

Rows are read ``chunk_rows`` at a time (memory stays bounded by the chunk size), checked
with the same rules as the scoring server, scored by the registered pyfunc, and written
to a temporary file beside the output that replaces it only once every chunk is done.
Rows that cannot be scored go to ``<output stem>.rejects.parquet`` with their reason.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from galaxy.prepare import SchemaError, canonicalize, check_rows
from galaxy.schema import FEATURE_COLUMNS

OBJID = "objid"
UNCERTAIN = "uncertain"
NOT_A_NUMBER = "not_a_number"
INVALID_OBJID = "invalid_objid"

OUTPUT_SCHEMA = pa.schema(
    [
        ("objid", pa.int64()),
        ("label", pa.string()),
        ("p_elliptical", pa.float64()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
    ]
)
READ_ERRORS = (pd.errors.ParserError, pa.ArrowException, UnicodeDecodeError, EOFError, OSError)
REJECTS_SCHEMA = pa.schema([("objid", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])


class ClassifyError(RuntimeError):
    """The file could not be classified; no output file was left behind."""


class Predictor(Protocol):
    def predict(self, data: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class LoadedModel:
    model: Predictor
    uri: str
    name: str
    version: str | None


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


# --------------------------------------------------------------------------- model


def load_model(model_uri: str, tracking_uri: str) -> LoadedModel:
    """Load the pyfunc once; name and version come from the registry for ``models:/`` URIs."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    name, version = model_uri, None
    try:
        if model_uri.startswith("models:/"):
            rest = model_uri.removeprefix("models:/").strip("/")
            client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
            if "@" in rest:
                name, alias = rest.split("@", 1)
                version = str(client.get_model_version_by_alias(name, alias).version)
            else:
                name, _, version = rest.partition("/")
                version = version or None
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as error:
        raise ClassifyError(f"cannot load model {model_uri} from {tracking_uri}: {error.message}") from None
    return LoadedModel(model, model_uri, name, version)


# --------------------------------------------------------------------------- reading


def _required(only_unlabelled: bool) -> list[str]:
    return [OBJID, *FEATURE_COLUMNS, *([UNCERTAIN] if only_unlabelled else [])]


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def _source_columns(header: Sequence[str], required: Sequence[str]) -> dict[str, str]:
    """Map each required canonical name to the file's own column name (raises ``SchemaError``)."""
    probe = pd.DataFrame(columns=list(header))
    canonical = canonicalize(probe, required)
    return {str(canonical.columns[i]): str(header[i]) for i in range(len(header))}


def read_chunks(path: Path, chunk_rows: int, required: Sequence[str]) -> Iterator[pd.DataFrame]:
    """Chunks of ``path`` holding only the ``required`` columns, under their canonical names.

    The header is checked before any row is read: a missing column raises ``SchemaError``.
    ``objid`` is read as text so 19-digit ids keep every digit.
    """
    if not path.exists():
        raise ClassifyError(f"input file not found: {path}")
    if _is_parquet(path):
        parquet = pq.ParquetFile(path)
        mapping = _source_columns(parquet.schema_arrow.names, required)
        columns = [mapping[name] for name in required]
        renames = {mapping[name]: name for name in required}
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas().rename(columns=renames)
        return
    header = pd.read_csv(path, nrows=0).columns
    mapping = _source_columns(list(header), required)
    columns = [mapping[name] for name in required]
    renames = {mapping[name]: name for name in required}
    # every column is parsed (no usecols): only then does pandas refuse a line with extra fields
    reader = pd.read_csv(
        path,
        dtype={mapping[OBJID]: "string"},
        chunksize=chunk_rows,
        low_memory=False,
    )
    with reader:
        for chunk in reader:
            yield chunk[columns].rename(columns=renames)


# --------------------------------------------------------------------------- checking


def parse_objid(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Ids as nullable int64 and a mask of the rows whose id is unusable."""
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        ids = values.astype("Int64")
        return ids, ids.isna()
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & np.isfinite(values) & (values == np.round(values))
        ids = pd.Series(pd.NA, index=values.index, dtype="Int64")
        ids[whole] = values[whole].astype("int64")
        return ids, ~whole
    text = values.astype("string").str.strip()
    integer = text.str.fullmatch(r"[+-]?\d{1,19}").fillna(False).astype(bool)
    ids = pd.Series(pd.NA, index=values.index, dtype="Int64")
    if integer.any():
        parsed = pd.to_numeric(text[integer].astype(object).map(int), errors="coerce")
        ids[integer] = parsed
    return ids, ids.isna()


def check_chunk(chunk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a chunk into scoreable rows (objid + features, float64) and rejects."""
    chunk = chunk.reset_index(drop=True)
    reason = pd.Series("", index=chunk.index, dtype=object)
    detail = pd.Series("", index=chunk.index, dtype=object)
    ids, bad_ids = parse_objid(chunk[OBJID])
    features = pd.DataFrame(index=chunk.index)
    for name in FEATURE_COLUMNS:
        values = chunk[name]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype("float64")
        if not pd.api.types.is_numeric_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            text = values.astype("string").str.strip()
            not_number = numeric.isna() & values.notna() & (text != "").fillna(False)
            fresh = not_number & (reason == "")
            if fresh.any():
                reason[fresh] = NOT_A_NUMBER
                detail[fresh] = [f"{name}: expected a number, found {value!r}" for value in values[fresh]]
            values = numeric
        features[name] = values.astype("float64")
    fresh = bad_ids & (reason == "")
    reason[fresh] = INVALID_OBJID
    detail[fresh] = [f"objid: not a whole number ({value!r})" for value in chunk.loc[fresh, OBJID]]
    verdict = check_rows(features, FEATURE_COLUMNS, check_flags=False)
    fresh = (verdict.reason != "") & (reason == "")
    reason[fresh] = verdict.reason[fresh]
    detail[fresh] = verdict.detail[fresh]
    ok = reason == ""
    good = features[ok].reset_index(drop=True)
    good.insert(0, OBJID, ids[ok].astype("int64").to_numpy())
    rejects = pd.DataFrame({OBJID: ids[~ok], "reason": reason[~ok], "detail": detail[~ok]})
    return good, rejects.reset_index(drop=True)


def keep_unlabelled(chunk: pd.DataFrame) -> pd.DataFrame:
    """Rows whose GZ1 ``uncertain`` flag is 1 (anything else counts as labelled)."""
    flag = pd.to_numeric(chunk[UNCERTAIN], errors="coerce")
    return chunk[(flag == 1).to_numpy()]


# --------------------------------------------------------------------------- writing


def _temp_beside(path: Path) -> Path:
    """A fresh hidden name in the same folder, so ``os.replace`` is an atomic rename."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


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
    if not _is_parquet(output_path):
        raise ClassifyError(f"output must be a .parquet file, got {output_path}")
    if Path(input_path).resolve() in (output_path.resolve(), rejects_path.resolve()):
        raise ClassifyError(f"output {output_path} would overwrite the input")
    required = _required(only_unlabelled)
    chunks = read_chunks(Path(input_path), chunk_rows, required)
    try:  # header problems surface here, before any file is created
        first = next(chunks, None)
    except READ_ERRORS as error:
        raise ClassifyError(f"cannot read {input_path}: {error}") from error
    output_path.parent.mkdir(parents=True, exist_ok=True)
    counts = ClassifyCounts()
    temp_output, temp_rejects = _temp_beside(output_path), _temp_beside(rejects_path)
    try:
        with (
            pq.ParquetWriter(temp_output, OUTPUT_SCHEMA) as predictions,
            pq.ParquetWriter(temp_rejects, REJECTS_SCHEMA) as rejects,
        ):
            pending = [] if first is None else [first]
            # the next chunk is read (and decompressed, parsed) while this one is scored
            for chunk in read_ahead(_chain(pending, _reading(chunks, input_path))):
                counts.chunks += 1
                counts.input_rows += len(chunk)
                if only_unlabelled:
                    kept = keep_unlabelled(chunk)
                    counts.skipped += len(chunk) - len(kept)
                    chunk = kept
                good, bad = check_chunk(chunk)
                if len(good):
                    scored = model.model.predict(good[list(FEATURE_COLUMNS)])
                    table = pa.table(
                        {
                            "objid": pa.array(good[OBJID].to_numpy(), pa.int64()),
                            "label": pa.array(np.asarray(scored["label"], dtype=object), pa.string()),
                            "p_elliptical": pa.array(
                                np.asarray(scored["p_elliptical"], dtype="float64"), pa.float64()
                            ),
                            "model_name": pa.array([model.name] * len(good), pa.string()),
                            "model_version": pa.array([model.version] * len(good), pa.string()),
                        },
                        schema=OUTPUT_SCHEMA,
                    )
                    predictions.write_table(table)
                if len(bad):
                    rejects.write_table(
                        pa.Table.from_pandas(bad, schema=REJECTS_SCHEMA, preserve_index=False)
                    )
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
        os.replace(temp_rejects, rejects_path)
        os.replace(temp_output, output_path)
    except BaseException:
        for temp in (temp_output, temp_rejects):
            temp.unlink(missing_ok=True)
        raise
    return counts


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


T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items`` in order, produced by a background thread up to ``depth`` items ahead.

    Reading a chunk (decompression, parsing) and scoring the previous one then overlap on
    two cores; both spend most of their time in C code that releases the GIL. At most
    ``depth`` + 2 chunks are in memory. An error in the producer is raised here, at the
    point the failed item would have been; leaving the loop early stops the producer.
    """
    handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def put(item: object, error: BaseException | None = None) -> bool:
        while not stopped.is_set():
            try:
                handoff.put((item, error), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:
            put(_END, error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="classify-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stopped.set()
        producer.join()


def _chain(head: list[pd.DataFrame], rest: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    yield from head
    yield from rest


@task(name="load-model", retries=0, cache_policy=NO_CACHE)
def load_model_task(model_uri: str, tracking_uri: str) -> LoadedModel:
    return load_model(model_uri, tracking_uri)


@task(name="classify-file", retries=0, cache_policy=NO_CACHE)
def classify_file_task(
    input_path: Path, output_path: Path, model: LoadedModel, chunk_rows: int, only_unlabelled: bool
) -> ClassifyCounts:
    return classify_file(input_path, output_path, model, chunk_rows, only_unlabelled, get_run_logger())


__all__ = ["ClassifyError", "SchemaError", "classify_file", "load_model"]
