"""Fits counted through scikit-learn's callbacks, from joblib's worker processes too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galaxy_morphology.core.progress import Counter
from galaxy_morphology.core.training import SearchBudget, features_and_target, make_search, tune
from galaxy_morphology.io import search_progress
from galaxy_morphology.io.search_progress import SearchProgress, halving_plan
from tests.factories import raw_frame


def labelled(n_spiral: int, n_elliptical: int, seed: int) -> pd.DataFrame:
    frame = raw_frame(n_spiral, n_elliptical, 0, seed=seed)
    return frame.assign(label=np.where(frame["elliptical"] == 1, "elliptical", "spiral"))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_random_search_reports_exactly_its_fits_and_the_same_results(n_jobs: int) -> None:
    train, budget = labelled(60, 30, seed=1), SearchBudget("random", 4, 3, n_jobs, seed=0)
    counter = Counter()
    counted = tune("decision_tree", train, budget, callbacks=[SearchProgress(counter)])
    snapshot = counter.snapshot()
    assert (snapshot.done, snapshot.total) == (4 * 3, 4 * 3)
    assert snapshot.remaining == 0.0
    plain = tune("decision_tree", train, budget)
    assert (counted.best_params, counted.cv_mean, counted.cv_std) == (
        plain.best_params,
        plain.cv_mean,
        plain.cv_std,
    )


def test_a_halving_search_reports_the_fits_of_every_round() -> None:
    train = labelled(120, 60, seed=2)
    search = make_search("knn", SearchBudget("halving", 10, 3, 2, seed=0))
    counter = Counter()
    search.set_callbacks(SearchProgress(counter))
    search.fit(*features_and_target(train))
    fits = 3 * sum(search.n_candidates_)
    assert counter.snapshot().done == counter.snapshot().total == fits
    assert halving_plan(search.n_candidates_[0], search.n_iterations_, 3, search.min_resources_,
                        search.max_resources_)[0] == search.n_candidates_  # fmt: skip


def test_halving_plan_weighs_each_round_by_its_rows() -> None:
    assert halving_plan(10, 3, 3, 20, 150) == ([10, 4, 2], [1.0, 3.0, 7.5])


def test_a_worker_that_cannot_reach_the_listener_counts_nothing_and_does_not_fail() -> None:
    search_progress._send("/nonexistent/galaxy-listener", b"key", 0)
    assert search_progress._connection == ("/nonexistent/galaxy-listener", None)
    search_progress._send("/nonexistent/galaxy-listener", b"key", 0)  # remembered: no second try
