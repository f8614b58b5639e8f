"""Training-run tasks on MLflow: the parent run, one child run per family, evaluation, the gate.

None of these tasks retries: each creates or changes tracking state, and a second attempt
would make a second run or a second version.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run
from sklearn.pipeline import Pipeline

from galaxy_morphology.core import plots
from galaxy_morphology.core.gate import GateDecision, GateRule
from galaxy_morphology.core.metrics import Interval, classification_metrics, reliability_curve
from galaxy_morphology.core.prepare import LABEL, PreparedData
from galaxy_morphology.core.schema import model_columns
from galaxy_morphology.core.training import CalibrationChoice, Evaluation, FamilyResult, p_elliptical
from galaxy_morphology.io.locks import exclusive, lock_name
from galaxy_morphology.io.logs import run_logger
from galaxy_morphology.io.model_log import log_pyfunc
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


TRIGGER_TAG = "galaxy.trigger"
BUDGET_TAG = "galaxy.budget"
DIGEST_TAG = "galaxy.data.digest"
REVIEW_FLOW = "galaxy-review"


def _param_name(reason: str) -> str:
    return reason.replace("(", "").replace("]", "").replace(",", "_")


def run_trigger() -> str:
    """What started this training: a review, a deployment's run, or a direct call (the CLI)."""
    if flow_run.flow_name == REVIEW_FLOW:
        return "review"
    return "deployment" if deployment.id else "cli"


def training_run_name(tags: Mapping[str, str], winner: str | None = None) -> str:
    """``training-<trigger>-<budget>[-<winner>]-<digest>``: tells a quick CLI run from a review's."""
    parts = ["training", tags[TRIGGER_TAG], tags[BUDGET_TAG], *([winner] if winner else [])]
    return "-".join([*parts, tags[DIGEST_TAG][:8]])


@task(name="start-training-run", cache_policy=NO_CACHE)
def start_training_run(
    tracking: Tracking, experiment: str, prepared: PreparedData, params: dict[str, Any]
) -> str:
    """Open the parent run: data provenance, split sizes, drops per reason, settings, datasets.

    Drop counts are parameters (facts of the data, mostly zero), not metric charts.
    """
    tags = {
        "galaxy.data.source": prepared.source,
        DIGEST_TAG: prepared.digest,
        "galaxy.flow": "training",
        TRIGGER_TAG: run_trigger(),
        BUDGET_TAG: str(params.get("budget") or ("quick" if params.get("quick") else "full")),
    }
    run_id = tracking.start_run(experiment, training_run_name(tags), tags)
    tracking.log_params(
        run_id,
        {
            **params,
            **{f"data.{k}": v for k, v in prepared.counts.items()},
            **{f"dropped.{_param_name(r)}": n for r, n in prepared.dropped.items()},
        },
    )
    parts = prepared.split
    training = pd.concat([parts.train, parts.validation], ignore_index=True)
    source = dataset_source(prepared.source)
    tracking.log_dataset(run_id, training, source, "gz1-train-validation", "training", LABEL)
    tracking.log_dataset(run_id, parts.test, source, "gz1-test", "test", LABEL)
    with tempfile.TemporaryDirectory() as folder:
        reference = training[[*model_columns(training.columns), LABEL]]
        reference.to_parquet(Path(folder) / "reference.parquet", index=False)
        tracking.log_folder(run_id, Path(folder), "reference")
    return run_id


def family_params(result: FamilyResult) -> dict[str, object]:
    """Shared keys first (``best_params`` reads the same in every family's run), then the
    family's own search space (``space.*``) and tuned values (``tuned.*``)."""
    return {
        "family": result.family,
        "best_params": ", ".join(f"{k}={v}" for k, v in sorted(result.best_params.items())),
        "n_candidates": result.n_candidates,
        "reference_family": result.reference,
        **{f"space.{k}": v for k, v in result.space.items()},
        **{f"tuned.{k}": v for k, v in result.best_params.items()},
    }


def fit_span(result: FamilyResult) -> tuple[float, float] | None:
    """When the family's search ran (start, end; epoch seconds), if known."""
    if math.isnan(result.fit_started_at):
        return None
    return result.fit_started_at, result.fit_started_at + result.fit_seconds


def log_figures(
    tracking: Tracking, run_id: str, y_true: np.ndarray, p_elliptical: np.ndarray, title: str, path: str
) -> None:
    """Confusion matrix and ROC curve of one model on one split, under ``path`` of the run."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        plots.save(plots.confusion_figure(y_true, p_elliptical, title), out / "confusion_matrix.png")
        plots.save(plots.roc_figure(y_true, p_elliptical, title), out / "roc_curve.png")
        tracking.log_folder(run_id, out, path)


@task(name="log-family-runs", cache_policy=NO_CACHE)
def log_family_runs(
    tracking: Tracking,
    experiment: str,
    parent_run_id: str,
    results: list[FamilyResult],
    prepared: PreparedData,
) -> None:
    """One finished child run per family, spanning its search: search space, best parameters, CV
    and validation scores, fit time, the train and validation datasets, validation figures."""
    parts, source = prepared.split, dataset_source(prepared.source)
    for result in results:
        tags = {"galaxy.family": result.family}
        with tracking.run(experiment, result.family, tags, parent_run_id, fit_span(result)) as run_id:
            tracking.log_params(run_id, family_params(result))
            tracking.log_metrics(
                run_id,
                {
                    "cv_f1_macro_mean": result.cv_mean,
                    "cv_f1_macro_std": result.cv_std,
                    "fit_seconds": result.fit_seconds,
                    "predict_ms_one_record": result.predict_ms,
                    **selection_metrics(result),
                    **{f"val_{k}": v for k, v in result.validation.items()},
                },
            )
            tracking.log_dataset(run_id, parts.train, source, "gz1-train", "training", LABEL)
            tracking.log_dataset(run_id, parts.validation, source, "gz1-validation", "validation", LABEL)
            proba = p_elliptical(result.estimator, parts.validation)
            title = f"{result.family}: validation split"
            log_figures(tracking, run_id, parts.validation[LABEL].to_numpy(), proba, title, "validation")


@task(name="log-evaluation", cache_policy=NO_CACHE)
def log_evaluation(
    tracking: Tracking, run_id: str, winner: str, evaluation: Evaluation, importances: pd.DataFrame
) -> None:
    """Test metrics and the winner's figures, report and importances on the parent run, whose
    name then tells the winner too."""
    tracking.set_tags(run_id, {"galaxy.winner": winner})
    tracking.rename_run(run_id, training_run_name(tracking.run_tags(run_id), winner))
    tracking.log_metrics(
        run_id,
        {
            **{f"test_{k}": v for k, v in evaluation.metrics.items()},
            **{f"test_confusion.{k}": v for k, v in evaluation.confusion.items()},
        },
    )
    title = f"{winner}: test split"
    log_figures(tracking, run_id, evaluation.y_true, evaluation.p_elliptical, title, "evaluation")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        (out / "classification_report.txt").write_text(evaluation.report)
        (out / "confusion_matrix.json").write_text(json.dumps(evaluation.confusion, indent=2))
        importances.to_csv(out / "feature_importances.csv", index=False)
        tracking.log_folder(run_id, out, "evaluation")


def selection_metrics(result: FamilyResult) -> dict[str, float]:
    """Repeated-CV macro F1 over train+validation (mean and standard error), when selection used it."""
    if result.selection_scores is None:
        return {}
    return {
        "selection_cv_f1_macro_mean": result.selection_mean,
        "selection_cv_f1_macro_se": result.selection_se,
    }


def interval_metrics(prefix: str, intervals: Mapping[str, Interval]) -> dict[str, float]:
    """``<prefix><metric>_ci_low`` and ``_ci_high``: the 95% bootstrap bounds of each metric."""
    bounds = {}
    for name, interval in intervals.items():
        bounds[f"{prefix}{name}_ci_low"], bounds[f"{prefix}{name}_ci_high"] = interval.low, interval.high
    return bounds


@task(name="log-quality", cache_policy=NO_CACHE)
def log_quality(
    tracking: Tracking,
    run_id: str,
    evaluation: Evaluation,
    calibration: CalibrationChoice,
    agreement: Interval | None,
) -> None:
    """Intervals of the test metrics, the calibration choice, the reliability curve, the agreement."""
    metrics = {
        **interval_metrics("test_", evaluation.intervals),
        **{f"calibration.brier_{name}": value for name, value in calibration.brier.items()},
    }
    if agreement is not None:
        metrics.update(
            {"agreement_spearman": agreement.value, **interval_metrics("", {"agreement_spearman": agreement})}
        )
    tracking.log_metrics(run_id, metrics)
    tracking.set_tags(run_id, {"galaxy.calibration": calibration.method or "none"})
    curve = reliability_curve(evaluation.y_true, evaluation.p_elliptical)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        plots.save(plots.reliability_figure(curve, "winner: test split"), out / "reliability_curve.png")
        curve.to_csv(out / "reliability_curve.csv", index=False)
        tracking.log_folder(run_id, out, "evaluation")


def score_version(registry: Registry, resolved: ResolvedModel, labelled: pd.DataFrame) -> dict[str, float]:
    """Every classification metric of one model on labelled rows."""
    predicted = registry.score(resolved, labelled)
    return classification_metrics(labelled[LABEL].to_numpy(), predicted["p_elliptical"].to_numpy())


@task(name="gate-and-register", cache_policy=NO_CACHE)
def gate_and_register(
    registry: Registry,
    run_id: str,
    pipeline: Pipeline,
    test: pd.DataFrame,
    evaluation: Evaluation,
    rule: GateRule,
    tags: dict[str, str],
) -> tuple[GateDecision, str]:
    """Judge the new model against the one in service and register it, all under the registry lock.

    The model in service is re-scored on this run's test split inside the lock, so a training
    that finished a moment earlier and took the alias is the one compared with; nothing is
    retried here (a second attempt would register a second version).
    """
    with exclusive(lock_name(registry.name)):
        removed = registry.remove_incomplete()
        if removed:
            run_logger().warning("removed version(s) %s left incomplete by a killed run", ", ".join(removed))
        in_service = registry.in_service()
        champion = None if in_service is None else score_version(registry, in_service, test)["f1_macro"]
        version_before = None if in_service is None else in_service.version
        decision = rule.decide(evaluation.metrics["f1_macro"], champion, version_before, registry.alias)
        log_model = functools.partial(log_pyfunc, pipeline, test.head(5), MODEL_CODE)
        version = registry.register(run_id, log_model, {**decision.tags(), **tags}, decision.alias)
    return decision, version
