"""Training tasks: tune each family, the soft vote, pick, calibrate, refit, evaluate (core/training.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from galaxy_morphology.core import training
from galaxy_morphology.core.metrics import Interval
from galaxy_morphology.core.prepare import Split
from galaxy_morphology.core.progress import Counter, duration
from galaxy_morphology.core.training import (
    CalibrationChoice,
    Evaluation,
    FamilyResult,
    SearchBudget,
    SelectionRule,
)
from galaxy_morphology.io.cluster import parallel_backend
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.search_progress import SearchProgress
from galaxy_morphology.tasks.progress import reporting


@task(name="tune-family", cache_policy=NO_CACHE)
def tune(
    family: str, train: pd.DataFrame, validation: pd.DataFrame, budget: SearchBudget, progress_seconds: float
) -> FamilyResult:
    """Search one family's space by K-fold CV on train, then score it on validation.

    Its fits done of the total, the elapsed time and the time left are logged and published
    as the progress artifact ``tuning-<family>`` every ``progress_seconds``.
    """
    counter = Counter()
    with (
        reporting(f"tuning {family}", "fits", counter, f"tuning-{family}", progress_seconds),
        parallel_backend(budget.dask_address),
    ):
        result = training.tune(family, train, budget, callbacks=[SearchProgress(counter)])
    return training.validated(result, validation)


@task(name="soft-vote-ensemble", cache_policy=NO_CACHE)
def soft_vote(results: list[FamilyResult], parts: Split, budget: SearchBudget) -> FamilyResult:
    with parallel_backend(budget.dask_address):
        result = training.soft_vote(results, parts.train, budget)
    return training.validated(result, parts.validation)


def tune_families(
    families: Sequence[str], parts: Split, budget: SearchBudget, ensemble: bool, progress_seconds: float
) -> list[FamilyResult]:
    """Every family tuned (one task run each), plus the soft vote when asked and possible."""
    log = run_logger()
    log.info(
        "tuning %d families (%s): up to %d candidates x %d folds each, progress every %gs",
        len(families), ", ".join(families), budget.n_iter, budget.cv_folds, progress_seconds,
    )  # fmt: skip
    results = []
    for number, family in enumerate(families, start=1):
        result = tune.with_options(task_run_name=f"tune-{family}")(
            family, parts.train, parts.validation, budget, progress_seconds
        )
        log.info(
            "%s (%d/%d): tuned in %s, CV macro F1 %.4f, validation %.4f",
            family, number, len(families), duration(result.fit_seconds), result.cv_mean,
            result.validation["f1_macro"],
        )  # fmt: skip
        results.append(result)
    if ensemble and len(training.vote_members(results)) >= 2:
        log.info(
            "soft vote: %d-fold CV of %d tuned families", budget.cv_folds, len(training.vote_members(results))
        )
        results.append(soft_vote(results, parts, budget))
        log.info("soft vote: done in %s", duration(results[-1].fit_seconds))
    return results


@task(name="select-winner", cache_policy=NO_CACHE)
def select(
    results: list[FamilyResult],
    parts: Split,
    rule: SelectionRule,
    max_predict_ms: float | None,
    dask_address: str | None,
) -> FamilyResult:
    """The winner: on validation, or (small validation split) by the one-standard-error rule on
    repeated stratified CV over train+validation."""
    log = run_logger()
    if not rule.by_cv(len(parts.validation)):
        return training.choose(results, len(parts.validation), rule, max_predict_ms)
    with parallel_backend(dask_address):
        training.cross_validate_results(results, parts.train, parts.validation, rule)
    for result in results:
        log.info(
            "%s: repeated CV macro F1 %.4f ± %.4f (SE)",
            result.family,
            result.selection_mean,
            result.selection_se,
        )
    return training.choose(results, len(parts.validation), rule, max_predict_ms)


@task(name="choose-calibration", cache_policy=NO_CACHE)
def choose_calibration(winner: FamilyResult, parts: Split, folds: int, seed: int) -> CalibrationChoice:
    """Sigmoid, isotonic or none, by Brier score on validation folds (never on the test split)."""
    y, probabilities = training.calibration_evidence(winner, parts.train, parts.validation)
    choice = training.choose_calibration(
        y, probabilities, folds, seed, training.has_log_odds(winner.estimator)
    )
    run_logger().info(
        "calibration: %s (Brier on validation folds: %s)",
        choice.method or "none",
        ", ".join(f"{name} {value:.4f}" for name, value in choice.brier.items()),
    )
    return choice


@task(name="refit-winner", cache_policy=NO_CACHE)
def refit(winner: FamilyResult, parts: Split, calibration: str | None, folds: int, n_jobs: int) -> Pipeline:
    return training.refit(winner, parts.train, parts.validation, calibration, folds, n_jobs)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(model: Pipeline, test: pd.DataFrame, draws: int, seed: int) -> Evaluation:
    return training.evaluate(model, test, draws, seed)


@task(name="volunteer-agreement", cache_policy=NO_CACHE)
def agreement(model: Pipeline, unlabelled: pd.DataFrame, draws: int, seed: int) -> Interval | None:
    """Spearman of P(elliptical) with GZ1's debiased elliptical share on the unlabelled galaxies."""
    return training.volunteer_agreement_of(model, unlabelled, draws, seed)


@task(name="feature-importances", cache_policy=NO_CACHE)
def importances(model: Pipeline, test: pd.DataFrame, repeats: int, seed: int) -> pd.DataFrame:
    return training.feature_importances(model, test, repeats, seed)
