"""Tables on disk: read CSV, CSV.gz and Parquet whole or in chunks; write files atomically.

Every command that reads a table (ingest, classify, monitoring) reads it here, so a file
type, an unreadable file or a missing column gets the same clear error everywhere.
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import re
import shutil
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.prepare import canonicalize

SUFFIXES = (".csv", ".csv.gz", ".parquet")
# what reading a damaged or empty file raises: an empty file (EmptyDataError), a damaged
# gzip stream (zlib.error, gzip.BadGzipFile), a truncated one (EOFError), bad text or rows
READ_ERRORS = (
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    pa.ArrowException,
    UnicodeDecodeError,
    EOFError,
    OSError,
    zlib.error,
)


class TableError(UserError, ValueError):
    """A table file cannot be read; the message names the file and the problem."""


def is_parquet(path: Path) -> bool:
    return Path(path).name.lower().endswith((".parquet", ".pq"))


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise TableError(f"{what} file not found: {path}")
    if not path.name.lower().endswith((*SUFFIXES, ".pq")):
        raise TableError(f"{what} {path}: unsupported file type (use {', '.join(SUFFIXES)})")


def _natural_key(path: Path) -> list[int | str]:
    """``part.2`` before ``part.10``: numbers in the name compare as numbers."""
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", str(path))]


def _is_part(path: Path) -> bool:
    """A table file, not a writer's marker or hidden file (``_SUCCESS``, ``.part.tmp``)."""
    return (
        path.is_file()
        and not path.name.startswith((".", "_"))
        and path.name.lower().endswith((*SUFFIXES, ".pq"))
    )


def input_parts(source: Path | str) -> list[Path]:
    """The files a classify input names, in order: one file, or a directory's or a glob's parts.

    A directory's parts are its CSV, CSV.gz and Parquet files (not recursive; hidden and
    ``_``-prefixed files skipped); a glob pattern (``*``, ``?``, ``[``) gives its matches.
    Parts are ordered by name, numbers compared as numbers (``part.2`` before ``part.10``).
    """
    text = str(source)
    path = Path(source)
    if path.is_dir():
        parts = [part for part in path.iterdir() if _is_part(part)]
        where = f"directory {path}"
    elif glob.has_magic(text) and not path.exists():
        parts = [Path(match) for match in glob.glob(text) if _is_part(Path(match))]
        where = f"pattern {text!r}"
    else:
        _check_readable(path, "input")
        return [path]
    if not parts:
        raise TableError(f"input {where}: no CSV, CSV.gz or Parquet files in it")
    return sorted(parts, key=lambda part: (_natural_key(part), str(part)))


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


def _header(path: Path) -> list[str]:
    if is_parquet(path):
        return list(pq.ParquetFile(path).schema_arrow.names)
    return [str(name) for name in pd.read_csv(path, nrows=0).columns]


def present_columns(path: Path, names: Sequence[str]) -> list[str]:
    """Those of ``names`` the file has, under a canonical name or a known alias."""
    return [name for name in names if name in _source_columns(_header(Path(path)), ())]


def read_chunks(
    path: Path, chunk_rows: int, required: Sequence[str], text_columns: Sequence[str] = ()
) -> Iterator[tuple[pd.DataFrame, float]]:
    """Chunks of ``path`` holding only the ``required`` columns, under their canonical names.

    Each chunk comes with the fraction of the file read so far (of its rows for Parquet,
    of its bytes, compressed or not, for CSV). The header is checked before any row is
    read: a missing column raises ``SchemaError``. ``text_columns`` are read as text
    (19-digit ids keep every digit).
    """
    path = Path(path)
    _check_readable(path, "input")
    mapping = _source_columns(_header(path), required)
    renames = {mapping[name]: name for name in required}
    if is_parquet(path):
        parquet = pq.ParquetFile(path)
        total, done = max(parquet.metadata.num_rows, 1), 0
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=list(renames)):
            done += batch.num_rows
            yield batch.to_pandas().rename(columns=renames), done / total
        return
    size = max(path.stat().st_size, 1)
    with path.open("rb") as raw:
        # every column is parsed (no usecols): only then does pandas refuse a line with extra fields
        reader = pd.read_csv(
            raw,
            compression="gzip" if path.name.lower().endswith(".gz") else None,
            dtype={mapping[name]: "string" for name in text_columns if name in mapping},
            chunksize=chunk_rows,
            low_memory=False,
        )
        with reader:
            for chunk in reader:
                yield chunk[list(renames)].rename(columns=renames), min(raw.tell() / size, 1.0)


def temporary_beside(path: Path, pid: int | None = None) -> Path:
    """A fresh hidden name in the same folder, so ``os.replace`` onto ``path`` is atomic.

    The name holds the host and process that made it: a later run can tell the leftovers
    of a process that was killed (``remove_stale_temporaries``) from those of one running.
    """
    owner = f"{socket.gethostname()}-{os.getpid() if pid is None else pid}"
    return path.with_name(f".{path.name}.{owner}.{uuid.uuid4().hex[:12]}.tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries beside ``path`` left by processes of this host that have ended.

    A process killed outright (SIGKILL, power loss) cannot remove its own. Those of live
    processes, and of other hosts sharing the folder, are kept.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    shape = re.compile(
        rf"^\.{re.escape(path.name)}\.{re.escape(socket.gethostname())}-(\d+)\.[0-9a-f]{{12}}\.tmp$"
    )
    removed = []
    for candidate in path.parent.iterdir():
        found = shape.match(candidate.name)
        if found and not _process_alive(int(found.group(1))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _keep_previous(path: Path) -> Path | None:
    """A copy of the file now at ``path`` (a hard link when possible), to restore it on failure."""
    if not path.is_file():
        return None
    backup = temporary_beside(path)
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def _publish(temporaries: Sequence[Path], paths: Sequence[Path]) -> None:
    """Move every temporary onto its path, or, when one move fails, put back what was there."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for temporary, path in zip(temporaries, paths, strict=True):
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a directory")
            previous = _keep_previous(path)
            done.append((path, previous))
            os.replace(temporary, path)
    except BaseException:
        for path, previous in reversed(done):
            if previous is not None:
                os.replace(previous, path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for _, previous in done:
            if previous is not None:
                previous.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(*paths: Path) -> Iterator[list[Path]]:
    """Temporary files beside ``paths``, moved onto them only when the block succeeds.

    On any error (or interruption) every temporary file is removed and no final name is
    touched. When one of the moves fails (a path that is a directory, a full disk), the
    paths already moved get their previous files back: all are published or none. The
    last path is published last: a reader that sees it sees all the others.
    """
    paths = tuple(Path(path) for path in paths)
    temporaries = [temporary_beside(path) for path in paths]
    try:
        yield temporaries
        _publish(temporaries, paths)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


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
