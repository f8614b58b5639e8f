"""Classification metrics of elliptical-vs-spiral predictions (pure)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from galaxy_morphology.core.metric_names import CONFUSION_KEYS
from galaxy_morphology.core.schema import CLASSES, LABEL_ELLIPTICAL, LABEL_SPIRAL

THRESHOLD = 0.5


def to_binary(labels: np.ndarray) -> np.ndarray:
    """1 for elliptical, 0 for spiral."""
    return (np.asarray(labels) == LABEL_ELLIPTICAL).astype(int)


def to_labels(p_elliptical: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    return np.where(np.asarray(p_elliptical) >= threshold, LABEL_ELLIPTICAL, LABEL_SPIRAL)


def classification_metrics(y_true: np.ndarray, p_elliptical: np.ndarray) -> dict[str, float]:
    """Per-class precision, recall, F1 and support; macro and weighted averages; accuracy; ROC AUC."""
    truth = to_binary(y_true)
    predicted = (np.asarray(p_elliptical) >= THRESHOLD).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=[0, 1], zero_division=0
    )
    metrics: dict[str, float] = {}
    for position, name in enumerate(CLASSES):
        metrics[f"precision_{name}"] = float(precision[position])
        metrics[f"recall_{name}"] = float(recall[position])
        metrics[f"f1_{name}"] = float(f1[position])
        metrics[f"support_{name}"] = float(support[position])
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            truth, predicted, labels=[0, 1], average=average, zero_division=0
        )
        metrics[f"precision_{average}"] = float(p)
        metrics[f"recall_{average}"] = float(r)
        metrics[f"f1_{average}"] = float(f)
    metrics["accuracy"] = float(accuracy_score(truth, predicted))
    metrics["roc_auc"] = (
        float(roc_auc_score(truth, p_elliptical)) if len(np.unique(truth)) == 2 else float("nan")
    )
    return metrics


def confusion_counts(y_true: np.ndarray, p_elliptical: np.ndarray) -> dict[str, int]:
    """Confusion matrix with elliptical as the positive class."""
    truth = to_binary(y_true)
    predicted = (np.asarray(p_elliptical) >= THRESHOLD).astype(int)
    counts = confusion_matrix(truth, predicted, labels=[0, 1]).ravel()  # tn, fp, fn, tp
    return {key: int(count) for key, count in zip(CONFUSION_KEYS, counts, strict=True)}


def report_text(y_true: np.ndarray, p_elliptical: np.ndarray) -> str:
    return classification_report(
        to_binary(y_true),
        (np.asarray(p_elliptical) >= THRESHOLD).astype(int),
        labels=[0, 1],
        target_names=list(CLASSES),
        digits=4,
        zero_division=0,
    )
