"""Training flow: data -> tune each family -> pick, refit, evaluate -> register behind the gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sklearn.pipeline import Pipeline

from galaxy_morphology.core.gate import GateDecision, GateRule
from galaxy_morphology.core.links import links_for
from galaxy_morphology.core.markdown import training_markdown
from galaxy_morphology.core.metrics import Interval
from galaxy_morphology.core.prepare import PreparedData, Split
from galaxy_morphology.core.review import budget_tags
from galaxy_morphology.core.settings import Family, Settings, load_settings
from galaxy_morphology.core.training import CalibrationChoice, FamilyResult, SearchBudget, SelectionRule
from galaxy_morphology.flows.data import Source, data_overrides, prepare_data, settings_path
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.registry import Registry
from galaxy_morphology.tasks.tracking import (
    gate_and_register,
    log_evaluation,
    log_family_runs,
    log_quality,
    start_training_run,
)
from galaxy_morphology.tasks.train import (
    agreement,
    choose_calibration,
    evaluate,
    importances,
    refit,
    select,
    tune_families,
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
    test_intervals: dict[str, Interval]
    calibration: str  # "sigmoid" | "isotonic" | "none"
    agreement: Interval | None  # Spearman with GZ1's elliptical vote share, unlabelled galaxies


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
        name="quick" if quick else "full",
    )


def selection_rule(settings: Settings, budget: SearchBudget) -> SelectionRule:
    training, quick = settings.training, budget.name == "quick"
    return SelectionRule(
        cv_below_rows=training.select_by_cv_below,
        folds=training.quick_cv_folds if quick else training.select_cv_folds,
        repeats=1 if quick else training.select_cv_repeats,
        seed=settings.split.seed,
        n_jobs=training.n_jobs,
    )


def run_parameters(settings: Settings, budget: SearchBudget) -> dict[str, object]:
    rule = selection_rule(settings, budget)
    return {
        "select_by_cv_below": rule.cv_below_rows,
        "select_cv": f"{rule.folds} folds x {rule.repeats}",
        "calibration": settings.training.calibration,
        "search": budget.search,
        "n_iter": budget.n_iter,
        "cv_folds": budget.cv_folds,
        "seed": budget.seed,
        "budget": budget.name,
        "quick": budget.name == "quick",
        "label_rule": settings.labels.rule,
        "families": ",".join(settings.training.families),
    }


def run_training(settings: Settings, quick: bool, promote: bool = True) -> TrainingSummary:
    """The data steps, then the training steps (shared with the retraining review).

    ``promote=False`` (the review) registers the new model as ``challenger`` whatever the
    gate says: only a maintainer's decision moves the in-service alias then.
    """
    return train_on(settings, prepare_data(settings), search_budget(settings, quick), promote)


def train_on(
    settings: Settings, prepared: PreparedData, budget: SearchBudget, promote: bool
) -> TrainingSummary:
    """Tune, pick, evaluate and register on already prepared data, inside one MLflow run."""
    registry, parts = Registry.from_settings(settings), prepared.split
    tracking, experiment, options = registry.tracking, settings.mlflow.experiment, settings.training
    run_id = start_training_run(tracking, experiment, prepared, run_parameters(settings, budget))
    try:
        results = tune_families(options.families, parts, budget, options.ensemble, options.progress_seconds)
        winner, calibration, model = pick_and_refit(settings, results, parts, budget)
        log_family_runs(tracking, experiment, run_id, results, prepared)
        evaluation = evaluate(model, parts.test, options.bootstrap_draws, budget.seed)
        agreed = agreement(model, prepared.unlabelled, options.bootstrap_draws, budget.seed)
        ranked = importances(model, parts.test, options.permutation_repeats, budget.seed)
        log_evaluation(tracking, run_id, winner.family, evaluation, ranked)
        log_quality(tracking, run_id, evaluation, calibration, agreed)
        rule = GateRule(options.gate_margin, promote)
        tags = {"galaxy.family": winner.family, "galaxy.data.digest": prepared.digest, **budget_tags(budget)}
        decision, version = gate_and_register(registry, run_id, model, parts.test, evaluation, rule, tags)
    except BaseException as error:
        tracking.end_run(run_id, error)
        raise
    tracking.end_run(run_id)
    summary = TrainingSummary(
        winner.family,
        evaluation.metrics,
        version,
        decision.alias,
        decision,
        run_id,
        family_scores(results),
        evaluation.intervals,
        calibration.method or "none",
        agreed,
    )
    experiment_id = tracking.experiment_id(experiment)
    publish_summary(
        summary, results, registry.name, prepared, training_links(settings, summary, experiment_id)
    )
    return summary


def training_links(settings: Settings, summary: TrainingSummary, experiment_id: str) -> dict[str, str]:
    """Markdown links to the training run, its figures and the registered version."""
    links, run_id = links_for(settings), summary.run_id
    return {
        "run": links.run(run_id),
        "version": links.version(settings.mlflow.model_name, summary.version),
        "confusion": links.artifact(
            experiment_id, run_id, "evaluation/confusion_matrix.png", "confusion matrix"
        ),
        "roc": links.artifact(experiment_id, run_id, "evaluation/roc_curve.png", "ROC curve"),
    }


def pick_and_refit(
    settings: Settings, results: list[FamilyResult], parts: Split, budget: SearchBudget
) -> tuple[FamilyResult, CalibrationChoice, Pipeline]:
    """The winner, its calibration (chosen on validation folds) and its refit on train+validation."""
    options = settings.training
    winner = select(
        results, parts, selection_rule(settings, budget), options.max_predict_ms, options.dask_address
    )
    calibration = CalibrationChoice(None, {}, 0)
    if options.calibration:
        calibration = choose_calibration(winner, parts, options.calibration_folds, settings.split.seed)
    model = refit(winner, parts, calibration.method, options.calibration_folds, options.n_jobs)
    return winner, calibration, model


def publish_summary(
    summary: TrainingSummary,
    results: list[FamilyResult],
    model_name: str,
    prepared: PreparedData,
    links: dict[str, str],
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
            links,
            prepared.source,
            prepared.counts,
            summary.test_intervals,
            quality_notes(summary, results),
        ),
        description="Family comparison and champion gate",
    )
    run_logger().info(
        "winner %s -> %s v%s (%s)", summary.winner, model_name, summary.version, summary.decision.reason
    )


def quality_notes(summary: TrainingSummary, results: list[FamilyResult]) -> list[str]:
    """The lines of the summary on selection, calibration and agreement with the volunteers."""
    agreed = summary.agreement
    by_cv = any(r.selection_scores is not None for r in results)
    return [
        "Winner chosen by "
        + (
            "the one-standard-error rule on repeated stratified CV over train+validation: the "
            "simplest family within one standard error of the best mean."
            if by_cv
            else "validation macro F1."
        ),
        f"Calibration of the winner: **{summary.calibration}** (the lowest Brier score on validation folds).",
        "Agreement with the volunteers on the unlabelled galaxies (Spearman of p_elliptical with "
        "p_el / (p_el + p_cs)): "
        + ("not computed (fewer than 3 rows)" if agreed is None else agreed.describe()),
    ]


def family_scores(results: list[FamilyResult]) -> dict[str, dict[str, float]]:
    return {
        r.family: {
            "cv_mean": r.cv_mean,
            "cv_std": r.cv_std,
            **(
                {"selection_cv_mean": r.selection_mean, "selection_cv_se": r.selection_se}
                if r.selection_scores is not None
                else {}
            ),
            **{f"val_{k}": v for k, v in r.validation.items()},
        }
        for r in results
    }


@flow(name="galaxy-training")
def training_flow(
    source: Source = "settings",
    snapshot: str = "",
    n_iter: int = 0,
    quick: bool = False,
    search: Literal["settings", "random", "halving"] = "settings",
    families: tuple[Family, ...] = (),
    settings_file: str = "",
) -> TrainingSummary:
    """Train every model family, register the winner, and gate the in-service alias.

    Prefect's Quick run trains with these defaults: the full budget of settings.yaml on its
    source (about 3 minutes on the shared snapshot with 2 cores).

    Args:
        source: Where the rows come from: `settings` (data.source in settings.yaml), the
            `snapshot` file, or SDSS `skyserver`.
        snapshot: Snapshot file (CSV, CSV.gz or Parquet) for source snapshot; empty: data.snapshot_path.
        n_iter: Search candidates per family; 0: training.n_iter (training.quick_n_iter with quick).
        quick: A one-minute demo budget (training.quick_n_iter candidates, training.quick_cv_folds
            folds) instead of the full one. Not Prefect's "Quick run", which uses these defaults.
        search: `random` (RandomizedSearchCV) or `halving` (HalvingRandomSearchCV); `settings`:
            training.search.
        families: Model families to tune; empty: training.families (all five).
        settings_file: Settings YAML; empty: settings.yaml in the worker's folder (or $GALAXY_SETTINGS_FILE).
    """
    training = {
        "n_iter": n_iter or None,
        "quick_n_iter": n_iter or None,
        "search": None if search == "settings" else search,
        "families": list(families) or None,
    }
    settings = load_settings(
        {**data_overrides(source, snapshot), "training": training}, settings_path(settings_file)
    )
    return run_training(settings, quick)
