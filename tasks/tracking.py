"""MLflow edges: experiments, runs, artifacts, the model registry and its aliases."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import skops.io
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

import galaxy
from galaxy import plots
from galaxy.gate import CHAMPION, GateDecision
from galaxy.metrics import classification_metrics
from galaxy.model import TRUSTED_TYPES
from galaxy.prepare import LABEL, PreparedData
from galaxy.schema import FEATURE_COLUMNS
from serving import model as pyfunc_module

PYFUNC_CODE = Path(pyfunc_module.__file__)
GALAXY_PACKAGE = Path(galaxy.__file__).parent
MODEL_NAME_IN_RUN = "model"
MODEL_DESCRIPTION = (
    "Elliptical vs spiral from SDSS catalogue columns, trained on Galaxy Zoo 1 flags. "
    "Input: raw catalogue columns; output: label and p_elliptical per row."
)


class RegistryError(RuntimeError):
    """The model could not be registered; nothing was left half-registered."""


def client(tracking_uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri, registry_uri=tracking_uri)


def is_local_store(tracking_uri: str) -> bool:
    return not tracking_uri.startswith(("http://", "https://", "databricks"))


def ensure_experiment(tracking: MlflowClient, name: str, artifact_root: Path) -> str:
    """The experiment's id, creating it (with a local artifact folder for local stores)."""
    existing = tracking.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    if is_local_store(tracking.tracking_uri):
        location = (Path(artifact_root).resolve() / name).as_uri()
    return tracking.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dataset_source(source: str) -> str:
    """A location MLflow can resolve: the snapshot's path, or SkyServer's SQL endpoint."""
    kind, _, detail = source.partition(":")
    if kind == "skyserver":
        release = detail.removeprefix("DR")
        return f"https://skyserver.sdss.org/dr{release}/en/tools/search/x_results.aspx"
    return detail


@task(name="start-training-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def start_training_run(
    tracking_uri: str, experiment: str, artifact_root: Path, prepared: PreparedData, params: dict[str, Any]
) -> str:
    """Open the parent run: data provenance, split sizes, drops per reason, settings."""
    tracking = client(tracking_uri)
    experiment_id = ensure_experiment(tracking, experiment, artifact_root)
    run = tracking.create_run(
        experiment_id,
        run_name=f"training-{prepared.digest[:8]}",
        tags={
            "mlflow.source.git.commit": git_commit(),
            "galaxy.data.source": prepared.source,
            "galaxy.data.digest": prepared.digest,
            "galaxy.flow": "training",
        },
    )
    run_id = run.info.run_id
    for key, value in {**params, **{f"data.{k}": v for k, v in prepared.counts.items()}}.items():
        tracking.log_param(run_id, key, value)
    for reason, count in prepared.dropped.items():
        tracking.log_metric(
            run_id, f"dropped.{reason.replace('(', '').replace(']', '').replace(',', '_')}", count
        )
    training = pd.concat([prepared.split.train, prepared.split.validation], ignore_index=True)
    source = dataset_source(prepared.source)
    dataset = mlflow.data.from_pandas(training, source=source, name="gz1-train-validation", targets=LABEL)
    test = mlflow.data.from_pandas(prepared.split.test, source=source, name="gz1-test", targets=LABEL)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(dataset, context="training")
        mlflow.log_input(test, context="test")
        with tempfile.TemporaryDirectory() as folder:
            reference = Path(folder) / "reference.parquet"
            training[[*FEATURE_COLUMNS, LABEL]].to_parquet(reference, index=False)
            mlflow.log_artifact(str(reference), artifact_path="reference")
    return run_id


@task(name="log-family-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_family_run(tracking_uri: str, parent_run_id: str, result: Any) -> str:
    """One child run per family: search space, best parameters, CV and validation scores."""
    tracking = client(tracking_uri)
    parent = tracking.get_run(parent_run_id)
    child = tracking.create_run(
        parent.info.experiment_id,
        run_name=result.family,
        tags={"mlflow.parentRunId": parent_run_id, "galaxy.family": result.family},
    )
    run_id = child.info.run_id
    for key, value in result.space.items():
        tracking.log_param(run_id, f"space.{key}", value)
    for key, value in result.best_params.items():
        tracking.log_param(run_id, f"best.{key}", value)
    tracking.log_param(run_id, "n_candidates", result.n_candidates)
    tracking.log_param(run_id, "reference_family", result.reference)
    tracking.log_metric(run_id, "cv_f1_macro_mean", result.cv_mean)
    tracking.log_metric(run_id, "cv_f1_macro_std", result.cv_std)
    tracking.log_metric(run_id, "fit_seconds", result.fit_seconds)
    tracking.log_metric(run_id, "predict_ms_one_record", result.predict_ms)
    for key, value in result.validation.items():
        tracking.log_metric(run_id, f"val_{key}", value)
    tracking.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


@task(name="log-evaluation", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def log_evaluation(
    tracking_uri: str, run_id: str, winner: str, evaluation: Any, importances: pd.DataFrame
) -> None:
    """Test metrics and the winner's figures, report and importances on the parent run."""
    tracking = client(tracking_uri)
    tracking.set_tag(run_id, "galaxy.winner", winner)
    for key, value in evaluation.metrics.items():
        tracking.log_metric(run_id, f"test_{key}", value)
    for key, value in evaluation.confusion.items():
        tracking.log_metric(run_id, f"test_confusion.{key}", value)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        plots.save(
            plots.confusion_figure(evaluation.y_true, evaluation.p_elliptical, f"{winner}: test split"),
            str(out / "confusion_matrix.png"),
        )
        plots.save(
            plots.roc_figure(evaluation.y_true, evaluation.p_elliptical, f"{winner}: test split"),
            str(out / "roc_curve.png"),
        )
        (out / "classification_report.txt").write_text(evaluation.report)
        (out / "confusion_matrix.json").write_text(json.dumps(evaluation.confusion, indent=2))
        importances.to_csv(out / "feature_importances.csv", index=False)
        for path in sorted(out.iterdir()):
            tracking.log_artifact(run_id, str(path), artifact_path="evaluation")


@task(name="finish-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def finish_run(tracking_uri: str, run_id: str, failed: bool = False) -> None:
    status = RunStatus.FAILED if failed else RunStatus.FINISHED
    client(tracking_uri).set_terminated(run_id, RunStatus.to_string(status))


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ChampionScore:
    version: str | None
    f1_macro: float | None


def champion_version(tracking: MlflowClient, model_name: str, alias: str = CHAMPION) -> str | None:
    try:
        return str(tracking.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@task(name="score-champion", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def score_champion(tracking_uri: str, model_name: str, test: pd.DataFrame) -> ChampionScore:
    """Re-score the model in service on this run's test split (same rows as the new model)."""
    tracking = client(tracking_uri)
    version = champion_version(tracking, model_name)
    if version is None:
        return ChampionScore(None, None)
    model = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")
    predicted = model.predict(test[list(FEATURE_COLUMNS)])
    metrics = classification_metrics(test[LABEL].to_numpy(), predicted["p_elliptical"].to_numpy())
    return ChampionScore(version, metrics["f1_macro"])


def dump_pipeline(pipeline: Pipeline, path: Path) -> None:
    """Serialize with skops and refuse any type outside the explicit trusted list."""
    skops.io.dump(pipeline, path)
    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    if untrusted:
        path.unlink()
        raise RegistryError(f"the pipeline holds types outside galaxy.model.TRUSTED_TYPES: {untrusted}")


def log_pyfunc(pipeline: Pipeline, example: pd.DataFrame, folder: Path) -> Any:
    """Log the pyfunc (code, skops artifact, signature, input example) to the active run."""
    skops_path = folder / "pipeline.skops"
    dump_pipeline(pipeline, skops_path)
    example = example[list(FEATURE_COLUMNS)].astype("float64").reset_index(drop=True)
    proba = pipeline.predict_proba(example)[:, 1]
    output = pd.DataFrame({"label": np.where(proba >= 0.5, "elliptical", "spiral"), "p_elliptical": proba})
    signature = mlflow.models.infer_signature(example, output)
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN,
        python_model=str(PYFUNC_CODE),
        artifacts={"pipeline": str(skops_path)},
        code_paths=[str(GALAXY_PACKAGE)],
        signature=signature,
        input_example=example,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    packages = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy", "matplotlib")
    return [f"{name}=={version(name)}" for name in packages]


@task(name="register-model", retries=0, cache_policy=NO_CACHE)
def register_model(
    tracking_uri: str,
    run_id: str,
    model_name: str,
    pipeline: Pipeline,
    example: pd.DataFrame,
    decision: GateDecision,
    extra_tags: dict[str, str],
) -> str:
    """Log and register a new version, tag it with the gate's decision, then set its alias.

    A failure after the version exists deletes that version again, so nothing is left
    half-registered and ``champion`` only ever moves as the last step.
    """
    tracking = client(tracking_uri)
    with tempfile.TemporaryDirectory() as folder, mlflow.start_run(run_id=run_id):
        info = log_pyfunc(pipeline, example, Path(folder))
    version = mlflow.register_model(info.model_uri, model_name)
    try:
        tracking.update_registered_model(model_name, description=MODEL_DESCRIPTION)
        for key, value in {**decision.tags(), **extra_tags}.items():
            tracking.set_model_version_tag(model_name, version.version, key, value)
        tracking.set_registered_model_alias(model_name, decision.alias, version.version)
    except Exception:
        tracking.delete_model_version(model_name, version.version)
        raise
    return str(version.version)
