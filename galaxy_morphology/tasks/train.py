"""Training tasks: tune each family, the soft vote, pick, refit, evaluate (core/training.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from galaxy_morphology.core import training
from galaxy_morphology.core.prepare import Split
from galaxy_morphology.core.progress import Counter, duration
from galaxy_morphology.core.training import Evaluation, FamilyResult, SearchBudget
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


@task(name="refit-winner", cache_policy=NO_CACHE)
def refit(winner: FamilyResult, parts: Split) -> Pipeline:
    return training.refit(winner, parts.train, parts.validation)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(model: Pipeline, test: pd.DataFrame) -> Evaluation:
    return training.evaluate(model, test)


@task(name="feature-importances", cache_policy=NO_CACHE)
def importances(model: Pipeline, test: pd.DataFrame, repeats: int, seed: int) -> pd.DataFrame:
    return training.feature_importances(model, test, repeats, seed)
