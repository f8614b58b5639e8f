"""Shared fixtures. Fixtures for one area only belong in that area's test files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.factories import raw_frame

# before any test module imports Prefect
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SNAPSHOT = REPO_ROOT.parent / "shared/data/gz1_sdss_dr9_curtin_3976.csv.gz"


SESSION_REGISTRY_URI = os.environ.get("MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def no_process_wide_mlflow_uris() -> Iterator[None]:
    """Each test ends with no MLflow tracking or registry URI set for the process.

    In-process flows point MLflow's fluent API at their store (``Registry`` sets both URIs, and
    the environment variables with them), and a registry URI left set wins over the tracking
    URI given to a later ``MlflowClient``. The tracking variable goes back to what it was when
    the test started (a module fixture may have set it for all its tests); the registry
    variable goes back to what it was when the session started.
    """
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for name, value in (("MLFLOW_TRACKING_URI", tracking), ("MLFLOW_REGISTRY_URI", SESSION_REGISTRY_URI)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session (started on first use)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def shared_snapshot() -> Path:
    """The real 3,976-row GZ1 + SDSS DR9 snapshot in ../shared/data (skips when absent)."""
    if not SHARED_SNAPSHOT.exists():
        pytest.skip("shared data folder ../shared/data is absent")
    return SHARED_SNAPSHOT


@pytest.fixture
def tiny_raw() -> pd.DataFrame:
    """Four spirals, four ellipticals and one uncertain row, all valid."""
    return raw_frame()
