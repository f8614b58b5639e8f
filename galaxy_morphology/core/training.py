"""Tune each model family, pick the winner, calibrate and refit it, evaluate it once on test.

The winner is picked on the validation split when it is large enough; below
``training.select_by_cv_below`` rows, on repeated stratified CV over train+validation with the
one-standard-error rule (``select_by_cv``).

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
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.inspection import permutation_importance
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import (
    HalvingRandomSearchCV,
    RandomizedSearchCV,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.pipeline import Pipeline

from galaxy_morphology.core.families import FAMILIES, describe_space
from galaxy_morphology.core.features import CatalogueFeatures, input_columns
from galaxy_morphology.core.metrics import (
    THRESHOLD,
    Interval,
    agreement_interval,
    bootstrap_intervals,
    calibration_metrics,
    classification_metrics,
    confusion_counts,
    report_text,
    to_binary,
)
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
    name: str = "full"  # full | quick | custom: how the budget was chosen

    def describe(self) -> str:
        each = f"{self.n_iter} candidates x {self.cv_folds}-fold CV per family"
        return f"{self.name}: {self.search} search, {each}"


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
    # repeated CV over train+validation (selection by CV): macro F1 per fold, and each
    # repeat's out-of-fold P(elliptical), shape (repeats, rows)
    selection_scores: np.ndarray | None = None
    out_of_fold: np.ndarray | None = None

    @property
    def simplicity(self) -> int:
        return FAMILIES[self.family].simplicity if self.family in FAMILIES else len(FAMILIES)

    @property
    def selection_mean(self) -> float:
        return float("nan") if self.selection_scores is None else float(self.selection_scores.mean())

    @property
    def selection_se(self) -> float:
        """Standard error of the mean fold score (folds of one repeat overlap, so a lower bound)."""
        scores = self.selection_scores
        return float("nan") if scores is None else float(scores.std(ddof=1) / np.sqrt(scores.size))

    @property
    def reference(self) -> bool:
        return self.family in FAMILIES and FAMILIES[self.family].reference


@dataclass
class Evaluation:
    metrics: dict[str, float]  # classification metrics, Brier score and ECE
    confusion: dict[str, int]
    report: str
    p_elliptical: np.ndarray
    y_true: np.ndarray
    intervals: dict[str, Interval] = field(default_factory=dict)  # 95% bootstrap, when asked


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


def evaluate(model: Any, frame: pd.DataFrame, draws: int = 0, seed: int = 0) -> Evaluation:
    """Every metric of ``model`` on labelled rows; with ``draws``, their 95% bootstrap intervals."""
    y_true = frame[LABEL].to_numpy()
    proba = p_elliptical(model, frame)
    return Evaluation(
        metrics={**classification_metrics(y_true, proba), **calibration_metrics(y_true, proba)},
        confusion=confusion_counts(y_true, proba),
        report=report_text(y_true, proba),
        p_elliptical=proba,
        y_true=y_true,
        intervals=bootstrap_intervals(y_true, proba, draws, seed) if draws else {},
    )


def volunteer_agreement_of(model: Any, unlabelled: pd.DataFrame, draws: int, seed: int) -> Interval | None:
    """Spearman of the model's P(elliptical) with GZ1's elliptical vote share on unlabelled rows."""
    if len(unlabelled) < 3:
        return None
    proba = p_elliptical(model, unlabelled)
    return agreement_interval(
        proba, unlabelled["p_el_debiased"].to_numpy(), unlabelled["p_cs_debiased"].to_numpy(), draws, seed
    )


def within_budget(results: list[FamilyResult], max_predict_ms: float | None) -> list[FamilyResult]:
    """The families whose one-record ``predict_ms`` is within the budget; an error if none is."""
    eligible = [r for r in results if max_predict_ms is None or r.predict_ms <= max_predict_ms]
    if not eligible:
        fastest = min(results, key=lambda result: result.predict_ms)
        raise SettingsError(
            f"training.max_predict_ms: no family predicts one record within {max_predict_ms:g} ms "
            f"(fastest: {fastest.family}, {fastest.predict_ms:.2f} ms)"
        )
    return eligible


def select_winner(results: list[FamilyResult], max_predict_ms: float | None = None) -> FamilyResult:
    """Highest validation macro F1; ties go to the higher CV mean.

    With a latency budget, only families whose one-record ``predict_ms`` is within it compete.
    """
    eligible = within_budget(results, max_predict_ms)
    return max(eligible, key=lambda result: (result.validation["f1_macro"], result.cv_mean))


def select_one_se(results: list[FamilyResult], max_predict_ms: float | None = None) -> FamilyResult:
    """The one-standard-error rule on repeated CV (``cross_validate_results`` filled them in):
    the simplest family whose mean macro F1 is within one standard error of the best mean.

    So a more complex family wins only when it is better than every simpler one by more than
    its own standard error.
    """
    eligible = within_budget(results, max_predict_ms)
    best = max(eligible, key=lambda result: result.selection_mean)
    floor = best.selection_mean - best.selection_se
    close = [result for result in eligible if result.selection_mean >= floor]
    return min(close, key=lambda result: (result.simplicity, -result.selection_mean))


@dataclass(frozen=True)
class SelectionRule:
    """How the winner is chosen: on validation, or by repeated CV when validation is small."""

    cv_below_rows: int  # validation splits smaller than this select by repeated CV (0: never)
    folds: int
    repeats: int
    seed: int
    n_jobs: int = 1

    def by_cv(self, validation_rows: int) -> bool:
        return validation_rows < self.cv_below_rows


def _fold_probabilities(
    model: Any, X: pd.DataFrame, y: np.ndarray, fit_rows: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    fitted = clone(model).fit(X.iloc[fit_rows], y[fit_rows])
    return np.asarray(fitted.predict_proba(X.iloc[rows])[:, 1])


def cross_validate_results(
    results: list[FamilyResult], train: pd.DataFrame, validation: pd.DataFrame, rule: SelectionRule
) -> list[FamilyResult]:
    """Each family's tuned pipeline refit on the same repeated stratified folds of
    train+validation: macro F1 per fold and out-of-fold probabilities (paired across families)."""
    X, y = features_and_target(pd.concat([train, validation], ignore_index=True))
    splitter = RepeatedStratifiedKFold(n_splits=rule.folds, n_repeats=rule.repeats, random_state=rule.seed)
    splits = list(splitter.split(X, y))
    jobs = [(result, fit_rows, rows) for result in results for fit_rows, rows in splits]
    probabilities = Parallel(n_jobs=rule.n_jobs)(
        delayed(_fold_probabilities)(result.estimator, X, y, fit_rows, rows)
        for result, fit_rows, rows in jobs
    )
    per_family = len(splits)
    for position, result in enumerate(results):
        mine = probabilities[position * per_family : (position + 1) * per_family]
        out_of_fold = np.full((rule.repeats, len(y)), np.nan)
        scores = []
        for index, ((_, rows), proba) in enumerate(zip(splits, mine, strict=True)):
            out_of_fold[index // rule.folds, rows] = proba
            scores.append(f1_score(y[rows], (proba >= THRESHOLD).astype(int), average="macro"))
        result.selection_scores, result.out_of_fold = np.asarray(scores), out_of_fold
    return results


def choose(
    results: list[FamilyResult], validation_rows: int, rule: SelectionRule, max_predict_ms: float | None
) -> FamilyResult:
    """The winner under ``rule``: one-standard-error on repeated CV, or best on validation."""
    if rule.by_cv(validation_rows):
        return select_one_se(results, max_predict_ms)
    return select_winner(results, max_predict_ms)


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


CALIBRATION_METHODS = ("sigmoid", "isotonic")
UNCALIBRATED = "none"


@dataclass(frozen=True)
class CalibrationChoice:
    method: str | None  # "sigmoid" | "isotonic" | None (kept as it is)
    brier: dict[str, float]  # cross-fitted Brier on validation folds: "none" and each method
    rows: int  # out-of-sample predictions the choice rests on


def _calibration_map(method: str) -> Any:
    if method == "sigmoid":
        return LogisticRegression(C=1e6)
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")


def _mapped(
    method: str, response: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    model = _calibration_map(method)
    if method == "sigmoid":
        model.fit(response[fit_rows, None], y[fit_rows])
        return np.asarray(model.predict_proba(response[rows, None])[:, 1])
    model.fit(response[fit_rows], y[fit_rows])
    return np.asarray(model.predict(response[rows]))


def choose_calibration(
    y: np.ndarray, probabilities: np.ndarray, folds: int, seed: int, logit_response: bool
) -> CalibrationChoice:
    """Sigmoid, isotonic or nothing: the lowest Brier score on validation folds.

    ``probabilities`` (repeats, rows) are out-of-sample P(elliptical) of the winner (out-of-fold
    predictions of the selection CV, or its validation-split predictions). Each map is fitted on
    all folds but one of them and scored on the one left out (cross-fitting), so no map is
    scored on the rows it was fitted on. ``logit_response``: the map reads log-odds, as
    ``CalibratedClassifierCV`` reads a classifier's ``decision_function``.
    """
    truth = to_binary(y) if y.dtype.kind in "OUS" else np.asarray(y)
    n_rows = int(np.atleast_2d(probabilities).shape[1])
    # a small validation split (selection on validation) may hold fewer rows of a class than
    # folds: cross-fit on as many folds as the smaller class allows, and not at all below two
    folds = min(folds, int(np.bincount(truth.astype(int), minlength=2).min()))
    if folds < 2:
        return CalibrationChoice(None, {}, n_rows)
    squared: dict[str, list[np.ndarray]] = {name: [] for name in (UNCALIBRATED, *CALIBRATION_METHODS)}
    for repeat, proba in enumerate(np.atleast_2d(probabilities)):
        clipped = np.clip(proba, 1e-9, 1 - 1e-9)
        response = np.log(clipped / (1 - clipped)) if logit_response else proba
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        for fit_rows, rows in splitter.split(proba.reshape(-1, 1), truth):
            squared[UNCALIBRATED].append((proba[rows] - truth[rows]) ** 2)
            for name in CALIBRATION_METHODS:
                squared[name].append((_mapped(name, response, truth, fit_rows, rows) - truth[rows]) ** 2)
    brier = {name: float(np.concatenate(values).mean()) for name, values in squared.items()}
    best = min(CALIBRATION_METHODS, key=lambda name: brier[name])
    return CalibrationChoice(best if brier[best] < brier[UNCALIBRATED] else None, brier, n_rows)


def calibration_evidence(
    winner: FamilyResult, train: pd.DataFrame, validation: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample P(elliptical) of the winner and the truth: its selection CV's out-of-fold
    predictions over train+validation, or (selection on validation) its validation predictions."""
    if winner.out_of_fold is not None:
        _, y = features_and_target(pd.concat([train, validation], ignore_index=True))
        return y, winner.out_of_fold
    _, y = features_and_target(validation)
    return y, p_elliptical(winner.estimator, validation)[None, :]


def has_log_odds(model: Pipeline) -> bool:
    """Whether ``CalibratedClassifierCV`` will read the classifier's log-odds (decision_function)."""
    return hasattr(model[1:], "decision_function")


def calibrated(model: Pipeline, method: str, folds: int, n_jobs: int = 1) -> Pipeline:
    """The same pipeline with its classifier steps inside ``CalibratedClassifierCV``.

    ``ensemble=False``: the map is fitted on out-of-fold predictions of the rows it is given
    (train+validation) and the classifier refit on all of them; the test split is never seen.
    """
    tail = model[1:]
    inner = tail[0] if len(tail) == 1 else tail
    step = CalibratedClassifierCV(inner, method=method, cv=folds, ensemble=False, n_jobs=n_jobs)
    return Pipeline([("features", model[0]), ("classifier", step)])


def refit(
    result: FamilyResult,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    calibration: str | None = None,
    calibration_folds: int = 5,
    n_jobs: int = 1,
) -> Pipeline:
    """The winner's pipeline refit on train+validation, calibrated when ``calibration`` names a method."""
    combined = pd.concat([train, validation], ignore_index=True)
    X, y = features_and_target(combined)
    model = clone(result.estimator)
    if calibration is not None:
        model = calibrated(model, calibration, calibration_folds, n_jobs)
    return model.fit(X, y)


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
