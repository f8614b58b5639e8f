"""Where work runs besides this process: joblib's backend for the searches, and a Dask
cluster's workers for batch scoring."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import joblib

T = TypeVar("T")
R = TypeVar("R")
CONNECT_TIMEOUT = "30s"


class ClusterError(RuntimeError):
    """The cluster could not be reached, or a task failed on it; the message says which."""


@contextlib.contextmanager
def parallel_backend(dask_address: str | None) -> Iterator[None]:
    """Local joblib workers by default; the Dask scheduler at ``dask_address`` when set."""
    if dask_address is None:
        yield
        return
    from distributed import Client

    with Client(dask_address), joblib.parallel_backend("dask"):
        yield


def ordered_map(
    address: str,
    function: Callable[..., R],
    items: Iterable[T],
    *args: Any,
    describe: Callable[[T], str] = str,
    window: int | None = None,
    setup: Callable[[], object] | None = None,
) -> Iterator[R]:
    """``function(item, *args)`` for each item on the cluster at ``address``, yielded in input order.

    ``setup`` first runs once on every worker there (e.g. loading the model), all at once; if
    it fails on one, ``ClusterError`` names the worker and nothing is read. Each item is then
    sent to the cluster as it is read, and at most ``window`` (default: two per worker thread)
    are in flight, so memory stays bounded whatever the number of items. The first task to
    fail stops everything: the rest are cancelled and ``ClusterError`` names the failed item
    (``describe``) and its error. An error raised while reading ``items`` passes through
    unchanged.
    """
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {error}") from error
    pending: deque[tuple[str, Any]] = deque()
    with client:
        threads = client.nthreads()
        limit = window or 2 * max(sum(threads.values()), 1)
        if setup is not None:
            _on_every_worker(client, address, setup, list(threads))

        def oldest() -> R:
            where, future = pending.popleft()
            try:
                return future.result()
            except Exception as error:
                raise ClusterError(
                    f"{where} failed on the Dask cluster at {address}: {type(error).__name__}: {error}"
                ) from error

        try:
            for item in items:
                data = client.scatter(item, hash=False)
                pending.append((describe(item), client.submit(function, data, *args, pure=False)))
                if len(pending) >= limit:
                    yield oldest()
            while pending:
                yield oldest()
        finally:
            client.cancel([future for _, future in pending])


def _on_every_worker(client: Any, address: str, setup: Callable[[], object], workers: list[str]) -> None:
    """``setup()`` on each worker, all at once; the first failure is raised, naming its worker."""
    results = client.run(setup, workers=workers, on_error="return")
    for worker, result in sorted(results.items()):
        if isinstance(result, Exception):
            raise ClusterError(
                f"worker {worker} of the Dask cluster at {address} could not get ready: "
                f"{type(result).__name__}: {result}"
            ) from result
