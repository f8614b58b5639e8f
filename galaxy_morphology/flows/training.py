"""Training flow: data -> tune each family -> pick, refit, evaluate -> register behind the gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from galaxy_morphology.core.gate import GateDecision, GateRule
from galaxy_morphology.core.markdown import training_markdown
from galaxy_morphology.core.prepare import PreparedData
from galaxy_morphology.core.settings import Settings, load_settings
from galaxy_morphology.core.training import FamilyResult, SearchBudget, select_winner
from galaxy_morphology.flows.data import prepare_data
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry
from galaxy_morphology.tasks.tracking import (
    gate_and_register,
    log_evaluation,
    log_family_runs,
    start_training_run,
)
from galaxy_morphology.tasks.train import evaluate, importances, refit, tune_families


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


def run_parameters(settings: Settings, budget: SearchBudget, quick: bool) -> dict[str, object]:
    return {
        "search": budget.search,
        "n_iter": budget.n_iter,
        "cv_folds": budget.cv_folds,
        "seed": budget.seed,
        "quick": quick,
        "label_rule": settings.labels.rule,
        "families": ",".join(settings.training.families),
    }


def run_training(settings: Settings, quick: bool, promote: bool = True) -> TrainingSummary:
    """The data steps, then the training steps (shared with the retraining review).

    ``promote=False`` (the review) registers the new model as ``challenger`` whatever the
    gate says: only a maintainer's decision moves the in-service alias then.
    """
    return train_on(settings, prepare_data(settings), quick, promote)


def train_on(settings: Settings, prepared: PreparedData, quick: bool, promote: bool) -> TrainingSummary:
    """Tune, pick, evaluate and register on already prepared data, inside one MLflow run."""
    budget, registry, parts = search_budget(settings, quick), Registry.from_settings(settings), prepared.split
    tracking, experiment, options = registry.tracking, settings.mlflow.experiment, settings.training
    run_id = start_training_run(tracking, experiment, prepared, run_parameters(settings, budget, quick))
    try:
        results = tune_families(options.families, parts, budget, options.ensemble, options.progress_seconds)
        log_family_runs(tracking, experiment, run_id, results, prepared)
        winner = select_winner(results, options.max_predict_ms)
        model = refit(winner, parts)
        evaluation = evaluate(model, parts.test)
        ranked = importances(model, parts.test, options.permutation_repeats, budget.seed)
        log_evaluation(tracking, run_id, winner.family, evaluation, ranked)
        rule = GateRule(options.gate_margin, promote)
        tags = {"galaxy.family": winner.family, "galaxy.data.digest": prepared.digest}
        decision, version = gate_and_register(registry, run_id, model, parts.test, evaluation, rule, tags)
    except BaseException as error:
        tracking.end_run(run_id, error)
        raise
    tracking.end_run(run_id)
    summary = TrainingSummary(
        winner.family, evaluation.metrics, version, decision.alias, decision, run_id, family_scores(results)
    )
    publish_summary(summary, results, registry.name, prepared)
    return summary


def publish_summary(
    summary: TrainingSummary, results: list[FamilyResult], model_name: str, prepared: PreparedData
) -> None:
    create_markdown_artifact(
        key="training-summary",
        markdown=training_markdown(
            results,
            summary.winner,
            summary.test_metrics,
            summary.decision,
            model_name,
            summary.version,
            summary.run_id,
            prepared.source,
            prepared.counts,
        ),
        description="Family comparison and champion gate",
    )
    run_logger().info(
        "winner %s -> %s v%s (%s)", summary.winner, model_name, summary.version, summary.decision.reason
    )


def family_scores(results: list[FamilyResult]) -> dict[str, dict[str, float]]:
    return {
        r.family: {
            "cv_mean": r.cv_mean,
            "cv_std": r.cv_std,
            **{f"val_{k}": v for k, v in r.validation.items()},
        }
        for r in results
    }


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
    """Train every model family, register the winner, and gate the in-service alias."""
    settings = load_settings(
        {
            "data": {"source": source, "snapshot_path": snapshot},
            "training": {"n_iter": n_iter, "quick_n_iter": n_iter, "search": search, "families": families},
        },
        Path(settings_file) if settings_file else None,
    )
    return run_training(settings, quick)
