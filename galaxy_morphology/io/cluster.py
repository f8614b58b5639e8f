"""Where the searches' fits run: local joblib workers, or a Dask cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import joblib


@contextlib.contextmanager
def parallel_backend(dask_address: str | None) -> Iterator[None]:
    """Local joblib workers by default; the Dask scheduler at ``dask_address`` when set."""
    if dask_address is None:
        yield
        return
    from distributed import Client

    with Client(dask_address), joblib.parallel_backend("dask"):
        yield
