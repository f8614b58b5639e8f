from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from galaxy_morphology.core.settings import SettingsError
from galaxy_morphology.core.training import SearchBudget, evaluate, refit, select_winner, tune, validated
from tests.factories import raw_frame


def labelled(n_spiral: int, n_elliptical: int, seed: int) -> pd.DataFrame:
    frame = raw_frame(n_spiral, n_elliptical, 0, seed=seed)
    return frame.assign(label=np.where(frame["elliptical"] == 1, "elliptical", "spiral"))


@pytest.mark.parametrize("search", ["random", "halving"])
def test_tune_returns_best_parameters_and_cv_scores(search: str) -> None:
    result = tune("knn", labelled(80, 40, seed=1), SearchBudget(search, 6, 3, 1, seed=0))
    assert result.family == "knn"
    assert set(result.best_params) == {"n_neighbors", "weights", "p"}
    assert 0.5 < result.cv_mean <= 1.0 and math.isfinite(result.cv_std)
    assert result.n_candidates >= 6


def test_tuning_is_deterministic_for_a_seed() -> None:
    train = labelled(60, 30, seed=2)
    first = tune("decision_tree", train, SearchBudget("random", 4, 3, 1, seed=3))
    second = tune("decision_tree", train, SearchBudget("random", 4, 3, 1, seed=3))
    assert first.best_params == second.best_params
    assert first.cv_mean == second.cv_mean


def test_winner_is_picked_on_validation_then_refit_on_train_and_validation() -> None:
    train, validation = labelled(60, 30, seed=4), labelled(20, 10, seed=5)
    results = [tune(name, train, SearchBudget("random", 2, 3, 1, seed=0)) for name in ("logistic", "knn")]
    results[0].validation = {"f1_macro": 0.9}
    results[1].validation = {"f1_macro": 0.95}
    winner = select_winner(results)
    assert winner.family == "knn"
    model = refit(winner, train, validation)
    assert model.named_steps["classifier"].n_samples_fit_ == len(train) + len(validation)
    metrics = evaluate(model, labelled(20, 10, seed=6)).metrics
    assert {"f1_macro", "roc_auc", "recall_elliptical", "precision_spiral", "f1_weighted"} <= set(metrics)


def test_a_latency_budget_leaves_out_slower_families() -> None:
    train, validation = labelled(60, 30, seed=4), labelled(20, 10, seed=5)
    results = [
        validated(tune(name, train, SearchBudget("random", 2, 3, 1, seed=0)), validation)
        for name in ("logistic", "knn")
    ]
    for result in results:
        assert 0 < result.predict_ms < 1_000
    results[0].validation["f1_macro"], results[0].predict_ms = 0.90, 1.0
    results[1].validation["f1_macro"], results[1].predict_ms = 0.95, 8.0
    assert select_winner(results).family == "knn"
    assert select_winner(results, max_predict_ms=10.0).family == "knn"
    assert select_winner(results, max_predict_ms=5.0).family == "logistic"
    with pytest.raises(SettingsError, match=r"training.max_predict_ms: .* within 0.5 ms .*logistic, 1.00 ms"):
        select_winner(results, max_predict_ms=0.5)
