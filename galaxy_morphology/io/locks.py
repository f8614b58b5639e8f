"""A lock every process of a deployment shares: a Prefect global concurrency limit of one slot.

The champion gate holds it from re-scoring the model in service to moving the alias, so two
trainings that finish together are judged one after the other and the better model wins,
whatever the tracking store (MLflow's registry has no compare-and-set for aliases).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect import get_client
from prefect.concurrency.sync import concurrency

LOCK_TIMEOUT_SECONDS = 900.0


def lock_name(model_name: str) -> str:
    return f"galaxy-registry-{model_name}"


@contextlib.contextmanager
def exclusive(name: str, timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the one slot of the limit ``name`` (created on first use) for the block."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True):
        yield
