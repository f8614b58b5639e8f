"""Tune each model family, pick the winner on validation, refit it, evaluate it once on test.

Pure model selection: the searches use whatever joblib backend the caller has set (the
training task sets a Dask one when ``training.dask_address`` is given).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.inspection import permutation_importance
from sklearn.model_selection import (
    HalvingRandomSearchCV,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.pipeline import Pipeline

from galaxy_morphology.core.families import FAMILIES, describe_space
from galaxy_morphology.core.features import CatalogueFeatures, input_columns
from galaxy_morphology.core.metrics import classification_metrics, confusion_counts, report_text, to_binary
from galaxy_morphology.core.prepare import LABEL
from galaxy_morphology.core.schema import model_columns
from galaxy_morphology.core.settings import SettingsError


@dataclass(frozen=True)
class SearchBudget:
    search: str  # "random" | "halving"
    n_iter: int
    cv_folds: int
    n_jobs: int
    seed: int
    halving_factor: int = 3
    dask_address: str | None = None


@dataclass
class FamilyResult:
    family: str
    estimator: Pipeline
    best_params: dict[str, Any]
    cv_mean: float
    cv_std: float
    fit_seconds: float
    n_candidates: int
    space: dict[str, str]
    validation: dict[str, float] = field(default_factory=dict)
    predict_ms: float = float("nan")  # median in-process predict of one record
    fit_started_at: float = float("nan")  # wall clock (epoch seconds) when the search began

    @property
    def reference(self) -> bool:
        return self.family in FAMILIES and FAMILIES[self.family].reference


@dataclass
class Evaluation:
    metrics: dict[str, float]
    confusion: dict[str, int]
    report: str
    p_elliptical: np.ndarray
    y_true: np.ndarray


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The raw model columns the table has (profile columns included) and the 0/1 target."""
    return frame[list(model_columns(frame.columns))], to_binary(frame[LABEL].to_numpy())


def make_search(family: str, budget: SearchBudget) -> RandomizedSearchCV | HalvingRandomSearchCV:
    spec = FAMILIES[family]
    cv = StratifiedKFold(n_splits=budget.cv_folds, shuffle=True, random_state=budget.seed)
    common: dict[str, Any] = {
        "scoring": "f1_macro",
        "cv": cv,
        "n_jobs": budget.n_jobs,
        "random_state": budget.seed,
        "refit": True,
        "error_score": "raise",
    }
    if budget.search == "halving":
        return HalvingRandomSearchCV(
            spec.build(budget.seed),
            spec.space,
            n_candidates=budget.n_iter,
            factor=budget.halving_factor,
            resource="n_samples",
            min_resources="exhaust",
            # early rounds fit on few rows: a candidate that cannot (e.g. more neighbours
            # than rows) scores NaN there and drops out instead of stopping the search
            **{**common, "error_score": np.nan},
        )
    return RandomizedSearchCV(spec.build(budget.seed), spec.space, n_iter=budget.n_iter, **common)


def tune(
    family: str, train: pd.DataFrame, budget: SearchBudget, callbacks: Sequence[Any] = ()
) -> FamilyResult:
    """Search one family's space by stratified K-fold CV on the training split.

    ``callbacks`` are scikit-learn fit callbacks set on the search (progress counting).
    """
    X, y = features_and_target(train)
    search = make_search(family, budget)
    if callbacks:
        search.set_callbacks(*callbacks)
    started_at, started = time.time(), time.perf_counter()
    search.fit(X, y)
    elapsed = time.perf_counter() - started
    best = search.best_index_
    results = search.cv_results_
    return FamilyResult(
        family=family,
        estimator=search.best_estimator_,
        best_params={k.removeprefix("classifier__"): v for k, v in search.best_params_.items()},
        cv_mean=float(results["mean_test_score"][best]),
        cv_std=float(results["std_test_score"][best]),
        fit_seconds=elapsed,
        n_candidates=len(results["params"]),
        space=describe_space(FAMILIES[family].space),
        fit_started_at=started_at,
    )


ENSEMBLE = "soft_vote"


def vote_members(results: list[FamilyResult]) -> list[FamilyResult]:
    """The tuned families the soft vote averages: all but the single decision tree."""
    return [r for r in results if r.family != "decision_tree"]


def soft_vote(results: list[FamilyResult], train: pd.DataFrame, budget: SearchBudget) -> FamilyResult:
    """Average the probabilities of the tuned families (a single decision tree left out).

    One pipeline still: the shared feature step, then a soft-voting classifier whose members
    are the tuned families' own scaler/classifier steps. Scored by the same K-fold CV.
    """
    members = vote_members(results)
    if len(members) < 2:
        raise ValueError("training.ensemble needs at least two families besides decision_tree")
    voters = []
    for member in members:
        tail = member.estimator[1:]
        voters.append((member.family, tail[0] if len(tail) == 1 else tail))
    model = Pipeline(
        [("features", CatalogueFeatures()), ("classifier", VotingClassifier(voters, voting="soft"))]
    )
    X, y = features_and_target(train)
    cv = StratifiedKFold(n_splits=budget.cv_folds, shuffle=True, random_state=budget.seed)
    started_at, started = time.time(), time.perf_counter()
    scores = cross_val_score(model, X, y, scoring="f1_macro", cv=cv, n_jobs=budget.n_jobs)
    model.fit(X, y)
    return FamilyResult(
        family=ENSEMBLE,
        estimator=model,
        best_params={"members": ",".join(m.family for m in members)},
        cv_mean=float(scores.mean()),
        cv_std=float(scores.std()),
        fit_seconds=time.perf_counter() - started,
        n_candidates=1,
        space={"members": "tuned families except decision_tree, soft voting"},
        fit_started_at=started_at,
    )


def p_elliptical(model: Any, frame: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(frame[list(input_columns(model))])[:, 1]


def evaluate(model: Any, frame: pd.DataFrame) -> Evaluation:
    y_true = frame[LABEL].to_numpy()
    proba = p_elliptical(model, frame)
    return Evaluation(
        metrics=classification_metrics(y_true, proba),
        confusion=confusion_counts(y_true, proba),
        report=report_text(y_true, proba),
        p_elliptical=proba,
        y_true=y_true,
    )


def select_winner(results: list[FamilyResult], max_predict_ms: float | None = None) -> FamilyResult:
    """Highest validation macro F1; ties go to the higher CV mean.

    With a latency budget, only families whose one-record ``predict_ms`` is within it compete.
    """
    eligible = [r for r in results if max_predict_ms is None or r.predict_ms <= max_predict_ms]
    if not eligible:
        fastest = min(results, key=lambda result: result.predict_ms)
        raise SettingsError(
            f"training.max_predict_ms: no family predicts one record within {max_predict_ms:g} ms "
            f"(fastest: {fastest.family}, {fastest.predict_ms:.2f} ms)"
        )
    return max(eligible, key=lambda result: (result.validation["f1_macro"], result.cv_mean))


def predict_ms(model: Pipeline, frame: pd.DataFrame, repeats: int = 31) -> float:
    """Median wall time, in ms, of ``predict_proba`` on one record (after one warm-up call)."""
    record = frame[list(input_columns(model))].head(1)
    model.predict_proba(record)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_proba(record)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings) * 1e3)


def refit(result: FamilyResult, train: pd.DataFrame, validation: pd.DataFrame) -> Pipeline:
    combined = pd.concat([train, validation], ignore_index=True)
    X, y = features_and_target(combined)
    return clone(result.estimator).fit(X, y)


def feature_importances(model: Pipeline, test: pd.DataFrame, repeats: int, seed: int) -> pd.DataFrame:
    """The classifier's own importances, or permutation importance of the raw inputs."""
    classifier = model.named_steps["classifier"]
    if hasattr(classifier, "feature_importances_"):
        names = model[:-1].get_feature_names_out()
        values = classifier.feature_importances_
        kind = "impurity"
        stds = np.zeros_like(values)
    else:
        X, y = features_and_target(test)
        result = permutation_importance(
            model, X, y, scoring="f1_macro", n_repeats=repeats, random_state=seed, n_jobs=1
        )
        names, values, stds, kind = (
            list(X.columns),
            result.importances_mean,
            result.importances_std,
            "permutation",
        )
    table = pd.DataFrame({"feature": names, "importance": values, "std": stds, "kind": kind})
    return table.sort_values("importance", ascending=False).reset_index(drop=True)


def validated(result: FamilyResult, validation: pd.DataFrame) -> FamilyResult:
    """``result`` with its validation metrics and one-record predict time filled in."""
    result.validation = evaluate(result.estimator, validation).metrics
    result.predict_ms = predict_ms(result.estimator, validation)
    return result
