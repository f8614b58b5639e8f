"""Serving fixtures: a trained champion in a temporary MLflow store, and its scoring server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from galaxy_morphology.core.settings import ServingSettings
from galaxy_morphology.serving.server import ScoringServer, limits_of, start_server
from tests.serving.champion import CHAMPION_URI, TrainedStore, train_champion

# the default limits, with a short body time-out so the slow-body case takes seconds
TEST_LIMITS = limits_of(ServingSettings(body_timeout_seconds=2.0))


@pytest.fixture(scope="session")
def trained_store(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return train_champion(tmp_path_factory.mktemp("champion"))


@pytest.fixture(scope="module")
def scoring_server(trained_store: TrainedStore) -> Iterator[ScoringServer]:
    """The real scoring server for the champion, on a free loopback port."""
    server = start_server(
        CHAMPION_URI,
        trained_store.tracking_uri,
        host="127.0.0.1",
        log_path=trained_store.folder / "server.log",
        timeout=120,
        limits=TEST_LIMITS,
    )
    try:
        yield server
    finally:
        server.stop()
