"""Tables on disk: read CSV, CSV.gz and Parquet whole or in chunks; write files atomically.

Every command that reads a table (ingest, classify, monitoring) reads it here, so a file
type, an unreadable file or a missing column gets the same clear error everywhere.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galaxy_morphology.core.prepare import canonicalize

SUFFIXES = (".csv", ".csv.gz", ".parquet")
READ_ERRORS = (pd.errors.ParserError, pa.ArrowException, UnicodeDecodeError, EOFError, OSError)


class TableError(ValueError):
    """A table file cannot be read; the message names the file and the problem."""


def is_parquet(path: Path) -> bool:
    return Path(path).name.lower().endswith((".parquet", ".pq"))


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise TableError(f"{what} file not found: {path}")
    if not path.name.lower().endswith((*SUFFIXES, ".pq")):
        raise TableError(f"{what} {path}: unsupported file type (use {', '.join(SUFFIXES)})")


def read_table(path: Path | str, what: str = "table") -> pd.DataFrame:
    """A CSV, CSV.gz or Parquet file as it is; ``TableError`` names the file and the problem."""
    path = Path(path)
    _check_readable(path, what)
    try:
        if is_parquet(path):
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except Exception as error:  # unreadable content: name the file and the parser's message
        raise TableError(f"{what} {path}: cannot be read ({type(error).__name__}: {error})") from error


def _source_columns(header: Sequence[str], required: Sequence[str]) -> dict[str, str]:
    """Map each canonical name to the file's own column name (raises ``SchemaError``)."""
    canonical = canonicalize(pd.DataFrame(columns=list(header)), required)
    return {str(canonical.columns[i]): str(header[i]) for i in range(len(header))}


def read_chunks(
    path: Path, chunk_rows: int, required: Sequence[str], text_columns: Sequence[str] = ()
) -> Iterator[pd.DataFrame]:
    """Chunks of ``path`` holding only the ``required`` columns, under their canonical names.

    The header is checked before any row is read: a missing column raises ``SchemaError``.
    ``text_columns`` are read as text (19-digit ids keep every digit).
    """
    path = Path(path)
    _check_readable(path, "input")
    if is_parquet(path):
        parquet = pq.ParquetFile(path)
        mapping = _source_columns(parquet.schema_arrow.names, required)
        renames = {mapping[name]: name for name in required}
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=list(renames)):
            yield batch.to_pandas().rename(columns=renames)
        return
    header = pd.read_csv(path, nrows=0).columns
    mapping = _source_columns(list(header), required)
    renames = {mapping[name]: name for name in required}
    # every column is parsed (no usecols): only then does pandas refuse a line with extra fields
    reader = pd.read_csv(
        path,
        dtype={mapping[name]: "string" for name in text_columns},
        chunksize=chunk_rows,
        low_memory=False,
    )
    with reader:
        for chunk in reader:
            yield chunk[list(renames)].rename(columns=renames)


def temporary_beside(path: Path) -> Path:
    """A fresh hidden name in the same folder, so ``os.replace`` onto ``path`` is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def atomic_paths(*paths: Path) -> Iterator[list[Path]]:
    """Temporary files beside ``paths``, moved onto them only when the block succeeds.

    On any error (or interruption) every temporary file is removed and no final name is
    touched. The last path is published last: a reader that sees it sees all the others.
    """
    temporaries = [temporary_beside(Path(path)) for path in paths]
    try:
        yield temporaries
        for temporary, path in zip(temporaries, paths, strict=True):
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        raise


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically (a reader never sees half a file)."""
    with atomic_paths(Path(path)) as (temporary,):
        frame.to_parquet(temporary, index=False)


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

    producer = threading.Thread(target=produce, name="read-ahead", daemon=True)
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
