"""Training flow: data -> tune each family -> pick, refit, evaluate -> register behind the gate."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.data import prepare_data
from galaxy.gate import CHALLENGER, GateDecision, decide
from galaxy.settings import Settings, load_settings
from galaxy.summary import training_markdown
from tasks.tracking import (
    finish_run,
    log_evaluation,
    log_family_run,
    register_model,
    score_champion,
    start_training_run,
)
from tasks.train import (
    SearchBudget,
    evaluate_task,
    importances_task,
    refit_task,
    select_winner,
    soft_vote_task,
    tune_task,
    validate_family,
    vote_members,
)


@dataclass(frozen=True)
class TrainingSummary:
    winner: str
    test_metrics: dict[str, float]
    version: str
    alias: str
    decision: GateDecision
    run_id: str
    families: dict[str, dict[str, float]]


def search_budget(settings: Settings, quick: bool) -> SearchBudget:
    training = settings.training
    return SearchBudget(
        search=training.search,
        n_iter=training.quick_n_iter if quick else training.n_iter,
        cv_folds=training.quick_cv_folds if quick else training.cv_folds,
        n_jobs=training.n_jobs,
        seed=settings.split.seed,
        halving_factor=training.halving_factor,
        dask_address=training.dask_address,
    )


def run_training(settings: Settings, quick: bool, promote: bool = True) -> TrainingSummary:
    """The training steps on already-loaded settings (shared with the retraining review).

    ``promote=False`` (the review) registers the new model as ``challenger`` whatever the
    gate says: only a maintainer's decision moves ``champion`` then.
    """
    log = get_run_logger()
    prepared = prepare_data(settings)
    parts = prepared.split
    budget = search_budget(settings, quick)
    uri = settings.tracking_uri()
    params = {
        "search": budget.search,
        "n_iter": budget.n_iter,
        "cv_folds": budget.cv_folds,
        "seed": budget.seed,
        "quick": quick,
        "label_rule": settings.labels.rule,
        "families": ",".join(settings.training.families),
    }
    run_id = start_training_run(
        uri, settings.mlflow.experiment, settings.mlflow.artifact_root, prepared, params
    )
    try:
        results = []
        for family in settings.training.families:
            result = validate_family(
                tune_task.with_options(task_run_name=f"tune-{family}")(family, parts.train, budget),
                parts.validation,
            )
            log_family_run(uri, run_id, result)
            log.info(
                "%s: CV macro F1 %.4f, validation %.4f", family, result.cv_mean, result.validation["f1_macro"]
            )
            results.append(result)
        if settings.training.ensemble and len(vote_members(results)) >= 2:
            ensemble = validate_family(soft_vote_task(results, parts.train, budget), parts.validation)
            log_family_run(uri, run_id, ensemble)
            results.append(ensemble)
        winner = select_winner(results, settings.training.max_predict_ms)
        model = refit_task(winner, parts.train, parts.validation)
        evaluation = evaluate_task(model, parts.test)
        importances = importances_task(model, parts.test, settings.training.permutation_repeats, budget.seed)
        log_evaluation(uri, run_id, winner.family, evaluation, importances)
        champion = score_champion(uri, settings.mlflow.model_name, parts.test)
        decision = decide(
            evaluation.metrics["f1_macro"], champion.f1_macro, champion.version, settings.training.gate_margin
        )
        if not promote and decision.alias != CHALLENGER:
            decision = replace(
                decision, alias=CHALLENGER, reason=f"{decision.reason}; review: awaits a maintainer"
            )
        version = register_model(
            uri,
            run_id,
            settings.mlflow.model_name,
            model,
            parts.test.head(5),
            decision,
            {"galaxy.family": winner.family, "galaxy.data.digest": prepared.digest},
        )
    except BaseException:
        finish_run(uri, run_id, failed=True)
        raise
    finish_run(uri, run_id)
    create_markdown_artifact(
        key="training-summary",
        markdown=training_markdown(
            results,
            winner.family,
            evaluation.metrics,
            decision,
            settings.mlflow.model_name,
            version,
            run_id,
            prepared.source,
            prepared.counts,
        ),
        description="Family comparison and champion gate",
    )
    log.info("winner %s -> %s v%s (%s)", winner.family, settings.mlflow.model_name, version, decision.reason)
    return TrainingSummary(
        winner=winner.family,
        test_metrics=evaluation.metrics,
        version=version,
        alias=decision.alias,
        decision=decision,
        run_id=run_id,
        families={
            r.family: {
                "cv_mean": r.cv_mean,
                "cv_std": r.cv_std,
                **{f"val_{k}": v for k, v in r.validation.items()},
            }
            for r in results
        },
    )


@flow(name="galaxy-training")
def training_flow(
    source: Literal["snapshot", "skyserver"] | None = None,
    snapshot: str | None = None,
    n_iter: int | None = None,
    quick: bool = False,
    search: Literal["random", "halving"] | None = None,
    families: list[str] | None = None,
    settings_file: str | None = None,
) -> TrainingSummary:
    """Train every model family, register the winner, and gate the champion alias."""
    settings = load_settings(
        {
            "data": {"source": source, "snapshot_path": snapshot},
            "training": {"n_iter": n_iter, "quick_n_iter": n_iter, "search": search, "families": families},
        },
        Path(settings_file) if settings_file else None,
    )
    return run_training(settings, quick)
