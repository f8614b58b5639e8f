"""Training-run tasks on MLflow: the parent run, one child run per family, evaluation, the gate.

None of these tasks retries: each creates or changes tracking state, and a second attempt
would make a second run or a second version. Reads (``score-in-service``) retry.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from galaxy_morphology.core import plots
from galaxy_morphology.core.gate import GateDecision
from galaxy_morphology.core.metrics import classification_metrics
from galaxy_morphology.core.prepare import LABEL, PreparedData
from galaxy_morphology.core.schema import FEATURE_COLUMNS
from galaxy_morphology.core.training import Evaluation, FamilyResult
from galaxy_morphology.io.registry import Registry, ResolvedModel
from galaxy_morphology.io.tracking import Tracking
from galaxy_morphology.serving.pyfunc import MODEL_CODE


def dataset_source(source: str) -> str:
    """A location MLflow can resolve: the snapshot's path, or SkyServer's SQL endpoint."""
    kind, _, detail = source.partition(":")
    if kind == "skyserver":
        release = detail.removeprefix("DR")
        return f"https://skyserver.sdss.org/dr{release}/en/tools/search/x_results.aspx"
    return detail


def _metric_name(reason: str) -> str:
    return reason.replace("(", "").replace("]", "").replace(",", "_")


@task(name="start-training-run", cache_policy=NO_CACHE)
def start_training_run(
    tracking: Tracking, experiment: str, prepared: PreparedData, params: dict[str, Any]
) -> str:
    """Open the parent run: data provenance, split sizes, drops per reason, settings, datasets."""
    run_id = tracking.start_run(
        experiment,
        f"training-{prepared.digest[:8]}",
        {
            "galaxy.data.source": prepared.source,
            "galaxy.data.digest": prepared.digest,
            "galaxy.flow": "training",
        },
    )
    tracking.log_params(run_id, {**params, **{f"data.{k}": v for k, v in prepared.counts.items()}})
    tracking.log_metrics(run_id, {f"dropped.{_metric_name(r)}": n for r, n in prepared.dropped.items()})
    parts = prepared.split
    training = pd.concat([parts.train, parts.validation], ignore_index=True)
    source = dataset_source(prepared.source)
    tracking.log_dataset(run_id, training, source, "gz1-train-validation", "training", LABEL)
    tracking.log_dataset(run_id, parts.test, source, "gz1-test", "test", LABEL)
    with tempfile.TemporaryDirectory() as folder:
        training[[*FEATURE_COLUMNS, LABEL]].to_parquet(Path(folder) / "reference.parquet", index=False)
        tracking.log_folder(run_id, Path(folder), "reference")
    return run_id


@task(name="log-family-runs", cache_policy=NO_CACHE)
def log_family_runs(
    tracking: Tracking, experiment: str, parent_run_id: str, results: list[FamilyResult]
) -> None:
    """One finished child run per family: search space, best parameters, CV and validation scores."""
    for result in results:
        with tracking.run(
            experiment, result.family, {"galaxy.family": result.family}, parent_run_id
        ) as run_id:
            tracking.log_params(
                run_id,
                {
                    **{f"space.{k}": v for k, v in result.space.items()},
                    **{f"best.{k}": v for k, v in result.best_params.items()},
                    "n_candidates": result.n_candidates,
                    "reference_family": result.reference,
                },
            )
            tracking.log_metrics(
                run_id,
                {
                    "cv_f1_macro_mean": result.cv_mean,
                    "cv_f1_macro_std": result.cv_std,
                    "fit_seconds": result.fit_seconds,
                    "predict_ms_one_record": result.predict_ms,
                    **{f"val_{k}": v for k, v in result.validation.items()},
                },
            )


@task(name="log-evaluation", cache_policy=NO_CACHE)
def log_evaluation(
    tracking: Tracking, run_id: str, winner: str, evaluation: Evaluation, importances: pd.DataFrame
) -> None:
    """Test metrics and the winner's figures, report and importances on the parent run."""
    tracking.set_tags(run_id, {"galaxy.winner": winner})
    tracking.log_metrics(
        run_id,
        {
            **{f"test_{k}": v for k, v in evaluation.metrics.items()},
            **{f"test_confusion.{k}": v for k, v in evaluation.confusion.items()},
        },
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        title = f"{winner}: test split"
        plots.save(
            plots.confusion_figure(evaluation.y_true, evaluation.p_elliptical, title),
            out / "confusion_matrix.png",
        )
        plots.save(plots.roc_figure(evaluation.y_true, evaluation.p_elliptical, title), out / "roc_curve.png")
        (out / "classification_report.txt").write_text(evaluation.report)
        (out / "confusion_matrix.json").write_text(json.dumps(evaluation.confusion, indent=2))
        importances.to_csv(out / "feature_importances.csv", index=False)
        tracking.log_folder(run_id, out, "evaluation")


@task(name="score-in-service", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def score_in_service(registry: Registry, test: pd.DataFrame) -> tuple[ResolvedModel, dict[str, float]] | None:
    """The model in service re-scored on this run's test split (same rows as the new model)."""
    resolved = registry.in_service()
    if resolved is None:
        return None
    return resolved, score_version(registry, resolved, test)


def score_version(registry: Registry, resolved: ResolvedModel, labelled: pd.DataFrame) -> dict[str, float]:
    """Every classification metric of one model on labelled rows."""
    predicted = registry.score(resolved, labelled)
    return classification_metrics(labelled[LABEL].to_numpy(), predicted["p_elliptical"].to_numpy())


@task(name="register-model", cache_policy=NO_CACHE)
def register_model(
    registry: Registry,
    run_id: str,
    pipeline: Pipeline,
    example: pd.DataFrame,
    decision: GateDecision,
    extra_tags: dict[str, str],
) -> str:
    """Log and register a new version, tag it with the gate's decision, then set its alias."""
    return registry.register(
        run_id, pipeline, example, MODEL_CODE, {**decision.tags(), **extra_tags}, decision.alias
    )
