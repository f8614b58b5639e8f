from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from galaxy_morphology.core import forest
from galaxy_morphology.core.forest import THREADED_MIN_ROWS, RandomForest


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=600) > 0, "elliptical", "spiral")
    return X, y, rng.normal(size=(THREADED_MIN_ROWS + 123, 6))


PARAMS = [
    {"n_estimators": 37, "max_features": 0.5, "min_samples_leaf": 2},
    {"n_estimators": 20, "max_depth": 4, "class_weight": "balanced_subsample"},
]


@pytest.mark.parametrize("params", PARAMS)
def test_probabilities_are_bit_identical_to_scikit_learns(data, params: dict) -> None:
    X, y, unseen = data
    ours = RandomForest(random_state=3, **params).fit(X, y)
    theirs = RandomForestClassifier(random_state=3, **params).fit(X, y)
    for rows in (unseen[:1], unseen[:500], unseen):  # one record, a small batch, a threaded batch
        assert np.array_equal(ours.predict_proba(rows), theirs.predict_proba(rows))
    assert np.array_equal(ours.predict(unseen), theirs.predict(unseen))
    assert list(ours.classes_) == ["elliptical", "spiral"]


def test_large_inputs_are_split_across_threads_and_stitched_in_order(data, monkeypatch) -> None:
    X, y, unseen = data
    model = RandomForest(n_estimators=10, random_state=0).fit(X, y)
    sizes: list[int] = []
    summed = RandomForest._summed

    def spy(self: RandomForest, block: np.ndarray) -> np.ndarray:
        sizes.append(len(block))
        return summed(self, block)

    monkeypatch.setattr(forest, "available_cores", lambda: 3)
    monkeypatch.setattr(RandomForest, "_summed", spy)
    threaded = model.predict_proba(unseen)
    assert sorted(sizes) == sorted(np.diff(np.linspace(0, len(unseen), 4).astype(int)).tolist())
    sizes.clear()
    monkeypatch.setattr(forest, "available_cores", lambda: 1)
    assert np.array_equal(model.predict_proba(unseen), threaded)
    assert sizes == [len(unseen)]


def test_unfitted_or_misshapen_input_is_refused_like_scikit_learns(data) -> None:
    X, y, _ = data
    with pytest.raises(ValueError, match="not fitted"):
        RandomForest().predict_proba(X)
    model = RandomForest(n_estimators=5, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="6 features"):
        model.predict_proba(X[:, :4])


def test_renamed_scikit_learn_internals_fall_back_to_scikit_learns_path(data, monkeypatch) -> None:
    X, y, unseen = data
    ours = RandomForest(n_estimators=15, random_state=2).fit(X, y)
    theirs = RandomForestClassifier(n_estimators=15, random_state=2).fit(X, y)
    monkeypatch.setattr(forest, "PRIVATE_NAMES", (*forest.PRIVATE_NAMES, "_renamed_in_a_new_release"))
    monkeypatch.setattr(RandomForest, "_summed", lambda self, block: pytest.fail("the direct sum ran"))
    for rows in (unseen[:1], unseen[:500]):
        assert np.array_equal(ours.predict_proba(rows), theirs.predict_proba(rows))
