from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from galaxy_morphology.core.families import FAMILIES, TRUSTED_TYPES, build_pipeline
from galaxy_morphology.core.schema import FEATURE_COLUMNS
from galaxy_morphology.core.training import FamilyResult, SearchBudget, features_and_target, soft_vote
from galaxy_morphology.io.model_log import dump_pipeline
from galaxy_morphology.io.registry import RegistryError
from tests.factories import raw_frame


@pytest.fixture(scope="module")
def training_rows():
    return raw_frame(40, 20, 0, seed=3)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_round_trips_through_skops_with_the_trusted_list(
    family: str, training_rows, tmp_path: Path
) -> None:
    X, y = features_and_target(
        training_rows.assign(label=np.where(training_rows.elliptical == 1, "elliptical", "spiral"))
    )
    pipeline = build_pipeline(family, seed=0).fit(X, y)
    path = tmp_path / "model.skops"
    dump_pipeline(pipeline, path)
    loaded = skops.io.load(path, trusted=TRUSTED_TYPES)
    np.testing.assert_allclose(loaded.predict_proba(X), pipeline.predict_proba(X))


def test_soft_vote_is_one_pipeline_that_round_trips(training_rows, tmp_path: Path) -> None:
    frame = training_rows.assign(label=np.where(training_rows.elliptical == 1, "elliptical", "spiral"))
    X, y = features_and_target(frame)
    members = [
        FamilyResult(name, build_pipeline(name, 0).fit(X, y), {}, 0.9, 0.0, 0.0, 1, {})
        for name in ("logistic", "knn", "decision_tree")
    ]
    result = soft_vote(members, frame, SearchBudget("random", 1, 3, 1, 0))
    assert result.best_params == {"members": "logistic,knn"}
    assert list(result.estimator.named_steps) == ["features", "classifier"]
    dump_pipeline(result.estimator, tmp_path / "vote.skops")
    loaded = skops.io.load(tmp_path / "vote.skops", trusted=TRUSTED_TYPES)
    np.testing.assert_allclose(
        loaded.predict_proba(X[list(FEATURE_COLUMNS)]), result.estimator.predict_proba(X)
    )


class Unlisted(BaseEstimator):
    """A type nobody put on the trusted list."""


def test_an_untrusted_type_is_refused_and_no_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    with pytest.raises(RegistryError, match="Unlisted"):
        dump_pipeline(Pipeline([("odd", Unlisted())]), path)
    assert not path.exists()
