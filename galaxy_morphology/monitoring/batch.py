"""Read and prepare a labelled batch, compute its metrics and its Evidently report (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galaxy_morphology.core import prepare
from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.metric_names import EVIDENTLY_NAMES
from galaxy_morphology.core.metrics import classification_metrics, confusion_counts, volunteer_agreement
from galaxy_morphology.core.prepare import LABEL, SchemaError
from galaxy_morphology.core.schema import CLASSES, FEATURE_COLUMNS, FLAGS, LABEL_ELLIPTICAL, model_columns
from galaxy_morphology.io.tables import TableError, read_table

PREDICTION = "prediction"
P_ELLIPTICAL = "p_elliptical"


class BatchError(UserError, ValueError):
    """The batch cannot be monitored; the message names the file and the problem."""


@dataclass(frozen=True)
class Batch:
    path: str
    labelled: pd.DataFrame  # clean rows with a ``label`` column (may be empty: votes only)
    counts: dict[str, int]
    dropped: dict[str, int]
    digest: str
    unlabelled: pd.DataFrame = field(default_factory=pd.DataFrame)  # clean rows without a label

    @property
    def has_labels(self) -> bool:
        return not self.labelled.empty

    @property
    def per_class(self) -> dict[str, int]:
        return {name: int((self.labelled[LABEL] == name).sum()) for name in CLASSES}


def read_batch(path: str | Path) -> pd.DataFrame:
    """A CSV, CSV.gz or Parquet file as a frame (no column checks yet)."""
    try:
        return read_table(Path(path), what="batch")
    except TableError as error:
        raise BatchError(str(error)) from error


def prepare_batch(raw: pd.DataFrame, path: str, rule: str = "gz1_flags", threshold: float = 0.8) -> Batch:
    """Validate, clean and label a batch with the project's functions; ``BatchError`` if unusable.

    A batch without the GZ1 flags but with the debiased vote fractions is a votes-only batch:
    every row is unlabelled, and it is judged by its agreement with the volunteers.
    """
    lowered = {str(column).strip().lower() for column in raw.columns}
    missing = [flag for flag in FLAGS if flag not in lowered]
    votes_only = len(missing) == len(FLAGS) and {"p_el_debiased", "p_cs_debiased"} <= lowered
    if missing and rule == "gz1_flags" and not votes_only:
        raise BatchError(
            f"batch {path}: missing label column(s) {', '.join(missing)} (a monitoring batch needs "
            "the GZ1 flags spiral/elliptical/uncertain, or the vote fractions p_el_debiased/p_cs_debiased)"
        )
    if votes_only:
        raw = raw.assign(spiral=0, elliptical=0, uncertain=1)  # no flags: no row is labelled
    try:
        table = prepare.validate_raw(raw)
        kept, dropped = prepare.clean(table)
        labelled, unlabelled = prepare.label(kept, rule, threshold)
    except SchemaError as error:
        raise BatchError(f"batch {path}: {error}") from error
    if labelled.empty and unlabelled.empty:
        raise BatchError(f"batch {path}: no clean rows ({len(raw)} rows read, none kept by cleaning)")
    counts = prepare.step_counts(len(raw), kept, dropped, labelled, unlabelled)
    return Batch(
        path, labelled, counts, dropped, prepare.digest(labelled if len(labelled) else kept), unlabelled
    )


def agreement_value(batch: Batch, unlabelled: pd.DataFrame | None) -> float:
    """Spearman of the scored unlabelled rows' p_elliptical with their elliptical vote share."""
    if unlabelled is None or unlabelled.empty:
        return float("nan")
    rows = batch.unlabelled
    return volunteer_agreement(
        unlabelled[P_ELLIPTICAL].to_numpy(),
        rows["p_el_debiased"].to_numpy(),
        rows["p_cs_debiased"].to_numpy(),
    )


def batch_values(y_true: np.ndarray, p_elliptical: np.ndarray) -> dict[str, float]:
    """F1/recall/precision per class and averaged, accuracy, ROC AUC and confusion counts."""
    values = dict(classification_metrics(y_true, p_elliptical))
    for key, count in confusion_counts(y_true, p_elliptical).items():
        values[f"confusion.{key}"] = float(count)
    return values


def finite(values: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite entries (what MLflow can log as metrics)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                out[key] = number
    return out


def scored_frame(frame: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Features, true label, predicted label and p_elliptical: the columns Evidently reads."""
    out = frame[list(FEATURE_COLUMNS)].astype("float64").reset_index(drop=True)
    if LABEL in frame.columns:
        out[LABEL] = frame[LABEL].to_numpy()
    out[PREDICTION] = predictions["label"].to_numpy()
    out[P_ELLIPTICAL] = predictions[P_ELLIPTICAL].to_numpy(dtype="float64")
    return out


def evidently_report(current: pd.DataFrame, reference: pd.DataFrame | None) -> tuple[Any, dict[str, float]]:
    """Evidently classification + feature drift of ``current`` vs ``reference`` (both scored).

    Returns the snapshot and the values read from it: ``drift_share`` and
    ``drifted_columns`` (DriftedColumnsCount), ``drift.<feature>`` scores, and Evidently's
    own classification values under ``evidently.<name>``. Without a reference only the
    classification part runs.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    definition = DataDefinition(
        numerical_columns=list(FEATURE_COLUMNS),
        classification=[
            BinaryClassification(
                target=LABEL,
                prediction_labels=PREDICTION,
                prediction_probas=P_ELLIPTICAL,
                pos_label=LABEL_ELLIPTICAL,
            )
        ],
    )
    metrics: list[Any] = [ClassificationPreset()]
    if reference is not None:
        metrics.append(DataDriftPreset(columns=list(FEATURE_COLUMNS)))
    current_data = Dataset.from_pandas(current, data_definition=definition)
    reference_data = (
        Dataset.from_pandas(reference, data_definition=definition) if reference is not None else None
    )
    snapshot = Report(metrics).run(current_data=current_data, reference_data=reference_data)
    return snapshot, snapshot_values(snapshot.dict())


_EVIDENTLY_SCALARS = dict(
    zip(("Accuracy", "Precision", "Recall", "F1Score", "RocAuc", "LogLoss"), EVIDENTLY_NAMES, strict=True)
)


def snapshot_values(snapshot: dict[str, Any]) -> dict[str, float]:
    """Pick the monitored numbers out of an Evidently snapshot's ``dict()``."""
    values: dict[str, float] = {}
    for metric in snapshot.get("metrics", []):
        name = str(metric.get("metric_name", ""))
        kind = name.split("(", 1)[0]
        value = metric.get("value")
        if kind == "DriftedColumnsCount" and isinstance(value, dict):
            values["drift_share"] = float(value["share"])
            values["drifted_columns"] = float(value["count"])
        elif kind == "ValueDrift" and "column=" in name:
            column = name.split("column=", 1)[1].split(",", 1)[0]
            values[f"drift.{column}"] = float(value)
        elif kind in _EVIDENTLY_SCALARS and isinstance(value, (int, float)):
            values[f"evidently.{_EVIDENTLY_SCALARS[kind]}"] = float(value)
    return values


def reference_from_table(raw: pd.DataFrame, rule: str, threshold: float, fractions: Any) -> pd.DataFrame:
    """Re-derive the training reference (train + validation) from the training source table."""
    table = prepare.validate_raw(raw)
    kept, _ = prepare.clean(table)
    labelled, _ = prepare.label(kept, rule, threshold)
    parts = prepare.split(labelled, fractions.train, fractions.validation, fractions.test, fractions.seed)
    reference = pd.concat([parts.train, parts.validation], ignore_index=True)
    return reference[[*model_columns(reference.columns), LABEL]]
