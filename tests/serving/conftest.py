"""Serving fixtures: a trained champion in a temporary MLflow store, and its scoring server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from galaxy_morphology.serving.server import ScoringServer, start_server
from tests.serving.champion import CHAMPION_URI, TrainedStore, train_champion


@pytest.fixture(scope="session")
def trained_store(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return train_champion(tmp_path_factory.mktemp("champion"))


@pytest.fixture(scope="module")
def scoring_server(trained_store: TrainedStore) -> Iterator[ScoringServer]:
    """The real MLflow scoring server for the champion, on a free loopback port."""
    server = start_server(
        CHAMPION_URI,
        trained_store.tracking_uri,
        host="127.0.0.1",
        log_path=trained_store.folder / "server.log",
        timeout=120,
    )
    try:
        yield server
    finally:
        server.stop()
