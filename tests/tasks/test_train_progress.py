"""A family's tuning progress in the run log and as a Prefect progress artifact (real Prefect)."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from galaxy_morphology.core.training import SearchBudget
from galaxy_morphology.tasks.train import tune
from tests.factories import raw_frame


def labelled(n_spiral: int, n_elliptical: int, seed: int) -> pd.DataFrame:
    frame = raw_frame(n_spiral, n_elliptical, 0, seed=seed)
    return frame.assign(label=np.where(frame["elliptical"] == 1, "elliptical", "spiral"))


@flow
def tune_one(budget: SearchBudget) -> float:
    return tune("decision_tree", labelled(60, 30, seed=1), labelled(20, 10, seed=2), budget, 0.5).cv_mean


async def artifacts_of(flow_run_id: object) -> list:
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_tuning_publishes_fits_done_of_the_exact_total_with_time_left(
    prefect_harness: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state = tune_one(SearchBudget("random", 4, 3, 2, seed=0), return_state=True)
    assert state.is_completed()
    artifacts = asyncio.run(artifacts_of(state.state_details.flow_run_id))
    messages = caplog.messages
    progress = [a for a in artifacts if a.key == "tuning-decision-tree"]
    assert len(progress) == 1 and progress[0].type == "progress"
    assert progress[0].data == 100.0
    assert progress[0].description.startswith("tuning decision_tree: 12/12 fits (100%), ")
    assert progress[0].description.endswith(" elapsed, done")
    assert any(m.startswith("tuning decision_tree: 12/12 fits (100%)") for m in messages)
