from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError

from galaxy_morphology.core import boosting
from galaxy_morphology.core.boosting import VECTOR_MAX_ROWS, GradientBoosting

PARAMS = {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 12, "random_state": 1}


def data(seed: int, n_classes: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(800, 5))
    score = X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * rng.normal(size=800)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    X[rng.random(X.shape) < 0.03] = np.nan  # learned missing-value directions are followed too
    unseen = rng.normal(size=(VECTOR_MAX_ROWS + 40, 5))
    unseen[rng.random(unseen.shape) < 0.05] = np.nan
    return X, np.array(["elliptical", "spiral", "edge-on"])[y], unseen


def assert_same(ours: GradientBoosting, theirs: HistGradientBoostingClassifier, rows: np.ndarray) -> None:
    for batch in (rows[:1], rows[:VECTOR_MAX_ROWS], rows):  # one record, the walk's limit, beyond it
        assert np.array_equal(ours.predict_proba(batch), theirs.predict_proba(batch))
        assert np.array_equal(ours.predict(batch), theirs.predict(batch))


def test_probabilities_are_bit_identical_to_scikit_learns() -> None:
    X, y, unseen = data(0)
    ours = GradientBoosting(**PARAMS).fit(X, y)
    assert_same(ours, HistGradientBoostingClassifier(**PARAMS).fit(X, y), unseen)
    assert ours._flat_trees() is not None  # the fast walk was the one compared


def test_a_refit_model_walks_its_new_trees() -> None:
    X, y, unseen = data(0)
    model = GradientBoosting(**PARAMS).fit(X, y)
    model.predict_proba(unseen[:1])
    X2, y2, _ = data(5)
    model.fit(X2, y2)
    assert_same(model, HistGradientBoostingClassifier(**PARAMS).fit(X2, y2), unseen)


@pytest.mark.parametrize("case", ["multiclass", "categorical"])
def test_models_the_walk_does_not_cover_take_scikit_learns_path(case: str) -> None:
    X, y, unseen = data(1, n_classes=3 if case == "multiclass" else 2)
    params = dict(PARAMS)
    if case == "categorical":
        X[:, 4] = np.where(np.isnan(X[:, 4]), np.nan, np.abs(np.round(X[:, 4] * 2)))
        unseen[:, 4] = np.where(np.isnan(unseen[:, 4]), np.nan, np.abs(np.round(unseen[:, 4] * 2)))
        params["categorical_features"] = [4]
    ours = GradientBoosting(**params).fit(X, y)
    assert ours._flat_trees() is None
    assert_same(ours, HistGradientBoostingClassifier(**params).fit(X, y), unseen)


def test_unfitted_or_misshapen_input_is_refused() -> None:
    X, y, _ = data(0)
    with pytest.raises(NotFittedError):
        GradientBoosting().predict_proba(X[:1])
    with pytest.raises(ValueError, match="5 features"):
        GradientBoosting(**PARAMS).fit(X, y).predict_proba(X[:1, :3])


@pytest.mark.parametrize("renamed", ["private_name", "node_field"])
def test_renamed_scikit_learn_internals_fall_back_to_scikit_learns_path(
    renamed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y, unseen = data(0)
    if renamed == "private_name":
        monkeypatch.setattr(boosting, "PRIVATE_NAMES", (*boosting.PRIVATE_NAMES, "_renamed_in_a_new_release"))
    else:
        monkeypatch.setattr(boosting, "NODE_FIELDS", (*boosting.NODE_FIELDS, "renamed_field"))
    walked: list[int] = []
    monkeypatch.setattr(boosting, "leaf_values", lambda trees, rows: walked.append(len(rows)))
    ours = GradientBoosting(**PARAMS).fit(X, y)
    assert_same(ours, HistGradientBoostingClassifier(**PARAMS).fit(X, y), unseen)
    assert walked == []  # scikit-learn's own path answered every call
