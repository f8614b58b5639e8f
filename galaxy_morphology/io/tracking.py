"""MLflow tracking: experiments, runs that always end in a true state, parameters, metrics, files.

Everything goes through one ``MlflowClient`` bound to the tracking URI; nothing here sets
MLflow's process-wide URI (``io/registry.py`` does, once, where MLflow's fluent API needs it).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from prefect.exceptions import ExternalSignal

# MLflow caps a batch at 1000 metrics and 100 params
_METRICS_PER_BATCH = 1000
_PARAMS_PER_BATCH = 100

# MLflow 3's UI reads this experiment tag to tell model training from GenAI work; without it an
# experiment opens on the GenAI (traces) view
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def is_local_store(tracking_uri: str) -> bool:
    return not tracking_uri.startswith(("http://", "https://", "databricks"))


def _millis(epoch_seconds: float) -> int:
    return int(epoch_seconds * 1000)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracking:
    """One tracking store: create experiments and runs, log to them, end them."""

    def __init__(self, uri: str, artifact_root: Path = Path("mlartifacts")) -> None:
        self.uri = uri
        self.artifact_root = Path(artifact_root)
        self.client = MlflowClient(uri, registry_uri=uri)

    def experiment_id(self, name: str) -> str:
        """The experiment's id, creating it (with a local artifact folder for local stores).

        Every experiment declares its kind (model training), older ones on first use.
        """
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            experiment_id = str(existing.experiment_id)
            if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                self.client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return experiment_id
        location = None
        if is_local_store(self.uri):
            location = (self.artifact_root.resolve() / name).as_uri()
        return str(
            self.client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        )

    def start_run(
        self,
        experiment: str,
        name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        started_at: float | None = None,
    ) -> str:
        """Open a run (RUNNING until ``end_run``); returns its id.

        ``started_at`` (epoch seconds) back-dates the run to when its work began.
        """
        all_tags = {"mlflow.source.git.commit": git_commit(), **tags}
        if parent_run_id is not None:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(
            self.experiment_id(experiment),
            start_time=None if started_at is None else _millis(started_at),
            run_name=name,
            tags=all_tags,
        )
        return str(run.info.run_id)

    def end_run(self, run_id: str, error: BaseException | None = None, ended_at: float | None = None) -> None:
        """FINISHED, or FAILED after an error, or KILLED after an interruption (at ``ended_at``)."""
        if error is None:
            status = RunStatus.FINISHED
        elif isinstance(error, KeyboardInterrupt | SystemExit | ExternalSignal):
            status = RunStatus.KILLED  # Ctrl-C, `kill`: Prefect turns SIGTERM into TerminationSignal
        else:
            status = RunStatus.FAILED
        end_time = None if ended_at is None else _millis(ended_at)
        self.client.set_terminated(run_id, RunStatus.to_string(status), end_time=end_time)

    @contextlib.contextmanager
    def run(
        self,
        experiment: str,
        name: str,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        span: tuple[float, float] | None = None,
    ) -> Iterator[str]:
        """A run that ends FINISHED when the block succeeds, FAILED or KILLED when it does not.

        ``span`` (start, end; epoch seconds) gives the run the times of work done before it was
        logged (a fit), so the UI's duration is the work's, not the logging's.
        """
        started_at, ended_at = span if span is not None else (None, None)
        run_id = self.start_run(experiment, name, tags, parent_run_id, started_at)
        try:
            yield run_id
        except BaseException as error:
            self.end_run(run_id, error)
            raise
        self.end_run(run_id, ended_at=ended_at)

    def rename_run(self, run_id: str, name: str) -> None:
        self.client.update_run(run_id, name=name)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + _PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        stamp = int(time.time() * 1000)
        items = [Metric(key, float(value), stamp, step) for key, value in metrics.items()]
        for start in range(0, len(items), _METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[start : start + _METRICS_PER_BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_folder(self, run_id: str, folder: Path, artifact_path: str) -> None:
        """Every file of ``folder`` under ``artifact_path`` of the run."""
        for path in sorted(Path(folder).iterdir()):
            self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_dataset(
        self, run_id: str, frame: pd.DataFrame, source: str, name: str, context: str, targets: str
    ) -> None:
        """Record ``frame`` as an input of the run (digest, schema, source), not its rows."""
        dataset = from_pandas(frame, source=source, name=name, targets=targets)
        tag = InputTag(key="mlflow.data.context", value=context)
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[tag])])

    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)
