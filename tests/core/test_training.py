from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.calibration import CalibratedClassifierCV

from galaxy_morphology.core.families import TRUSTED_TYPES
from galaxy_morphology.core.features import input_columns
from galaxy_morphology.core.settings import SettingsError
from galaxy_morphology.core.training import (
    CALIBRATION_METHODS,
    ENSEMBLE,
    FamilyResult,
    SearchBudget,
    SelectionRule,
    choose,
    choose_calibration,
    cross_validate_results,
    evaluate,
    p_elliptical,
    refit,
    select_one_se,
    select_winner,
    tune,
    validated,
    volunteer_agreement_of,
)
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


def with_scores(result: FamilyResult, mean: float, spread: float) -> FamilyResult:
    result.selection_scores = np.array([mean - spread, mean, mean + spread, mean])
    return result


def fake(family: str) -> FamilyResult:
    return FamilyResult(family, None, {}, 0.0, 0.0, 0.0, 1, {})  # type: ignore[arg-type]


def test_one_standard_error_rule_prefers_the_simpler_family_unless_another_is_clearly_better() -> None:
    logistic, forest, vote = fake("logistic"), fake("random_forest"), fake(ENSEMBLE)
    # the vote is best, but the logistic regression lies within one standard error of it
    results = [
        with_scores(vote, 0.95, 0.02),
        with_scores(forest, 0.947, 0.02),
        with_scores(logistic, 0.945, 0.02),
    ]
    assert vote.selection_se == pytest.approx(np.std([0.93, 0.95, 0.97, 0.95], ddof=1) / 2)
    assert select_one_se(results).family == "logistic"
    # better than every simpler family by more than its standard error: the vote wins
    with_scores(logistic, 0.90, 0.02), with_scores(forest, 0.91, 0.02)
    assert select_one_se(results).family == ENSEMBLE
    # a latency budget still leaves slower families out
    vote.predict_ms, forest.predict_ms, logistic.predict_ms = 5.0, 1.0, 0.5
    assert select_one_se(results, max_predict_ms=2.0).family == "random_forest"


def test_repeated_cv_scores_every_family_on_the_same_folds_of_train_and_validation() -> None:
    train, validation = labelled(50, 25, seed=7), labelled(10, 5, seed=8)
    results = [tune(name, train, SearchBudget("random", 2, 3, 1, seed=0)) for name in ("logistic", "knn")]
    rule = SelectionRule(cv_below_rows=1000, folds=3, repeats=2, seed=0)
    assert rule.by_cv(len(validation)) and not SelectionRule(10, 3, 2, 0).by_cv(len(validation))
    cross_validate_results(results, train, validation, rule)
    for result in results:
        assert result.selection_scores is not None and result.selection_scores.shape == (6,)
        assert result.out_of_fold is not None and result.out_of_fold.shape == (2, 90)
        assert np.isfinite(result.out_of_fold).all()
        assert 0.5 < result.selection_mean <= 1.0
    assert choose(results, len(validation), rule, None).family in {"logistic", "knn"}


def test_calibration_is_chosen_only_when_it_lowers_the_brier_score_on_validation_folds() -> None:
    rng = np.random.default_rng(9)
    truth = (rng.random(2000) < 0.3).astype(int)
    honest = np.clip(np.where(truth == 1, 0.8, 0.2) + rng.normal(0, 0.1, 2000), 0.01, 0.99)
    timid = 0.4 + 0.2 * honest  # right order, squeezed towards 0.5: calibration must help
    choice = choose_calibration(truth, timid[None, :], folds=5, seed=0, logit_response=False)
    assert choice.method in CALIBRATION_METHODS
    assert choice.brier[choice.method] < choice.brier["none"] - 0.05
    calibrated_truth = (rng.random(2000) < honest).astype(int)  # honest is calibrated for these labels
    kept = choose_calibration(calibrated_truth, honest[None, :], folds=5, seed=0, logit_response=True)
    assert min(kept.brier.values()) >= kept.brier["none"] - 0.002


def test_calibration_on_a_small_validation_split_uses_the_folds_its_smaller_class_allows() -> None:
    truth = np.array([0] * 12 + [1] * 3)  # 3 ellipticals: 3 folds at most
    proba = np.clip(truth * 0.6 + 0.2 + np.linspace(-0.1, 0.1, 15), 0.01, 0.99)
    choice = choose_calibration(truth, proba[None, :], folds=5, seed=0, logit_response=False)
    assert set(choice.brier) == {"none", *CALIBRATION_METHODS} and choice.rows == 15
    lone = choose_calibration(truth[:13], proba[None, :13], folds=5, seed=0, logit_response=False)
    assert lone.method is None and lone.brier == {}  # one elliptical: nothing to cross-fit


@pytest.mark.parametrize(("family", "method"), [("knn", "isotonic"), ("hist_gradient_boosting", "sigmoid")])
def test_a_calibrated_refit_keeps_one_pipeline_that_skops_loads_with_the_trusted_list(
    family: str, method: str, tmp_path: Path
) -> None:
    train, validation, test = labelled(50, 25, seed=10), labelled(10, 5, seed=11), labelled(20, 10, seed=12)
    result = tune(family, train, SearchBudget("random", 1, 3, 1, seed=0))
    model = refit(result, train, validation, method, calibration_folds=3)
    step = model.named_steps["classifier"]
    assert isinstance(step, CalibratedClassifierCV) and step.method == method
    assert input_columns(model) == input_columns(result.estimator)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    assert set(skops.io.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)
    loaded = skops.io.load(path, trusted=TRUSTED_TYPES)
    np.testing.assert_array_equal(p_elliptical(loaded, test), p_elliptical(model, test))
    evaluation = evaluate(loaded, test, draws=200, seed=0)
    assert {"brier", "ece"} <= set(evaluation.metrics)
    assert (
        evaluation.intervals["f1_macro"].low
        <= evaluation.metrics["f1_macro"]
        <= evaluation.intervals["f1_macro"].high
    )


def test_agreement_with_the_volunteers_on_unlabelled_rows() -> None:
    train = labelled(50, 25, seed=13)
    model = refit(tune("logistic", train, SearchBudget("random", 1, 3, 1, seed=0)), train, train.head(0))
    uncertain = raw_frame(0, 0, 40, seed=14)
    agreed = volunteer_agreement_of(model, uncertain, draws=200, seed=0)
    assert agreed is not None and -1 <= agreed.low <= agreed.value <= agreed.high <= 1
    assert volunteer_agreement_of(model, uncertain.head(2), draws=200, seed=0) is None
