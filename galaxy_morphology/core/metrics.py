"""Classification metrics of elliptical-vs-spiral predictions (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
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


# --- uncertainty: bootstrap intervals (one model) and paired differences (two models) ----------

CONFIDENCE = 0.95
# the figures every reported quality comes with an interval for
INTERVAL_METRICS = (
    "f1_macro",
    "f1_elliptical",
    "f1_spiral",
    "recall_elliptical",
    "recall_spiral",
    "precision_elliptical",
    "precision_spiral",
    "accuracy",
    "roc_auc",
    "brier",
)


@dataclass(frozen=True)
class Interval:
    value: float  # on the rows themselves
    low: float  # 2.5th percentile of the bootstrap draws
    high: float  # 97.5th percentile

    def describe(self, digits: int = 4) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _draw_weights(n_rows: int, draws: int, seed: int) -> np.ndarray:
    """How often each row is drawn in each bootstrap resample: (draws, n_rows) counts."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=draws).astype("float64")


def _weighted_metrics(truth: np.ndarray, p: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every ``INTERVAL_METRICS`` value for each row of ``weights`` at once (a weight per row)."""
    predicted = p >= THRESHOLD
    positive, negative = truth == 1, truth == 0

    def total(mask: np.ndarray) -> np.ndarray:
        return weights @ mask.astype("float64")

    tp, fn = total(positive & predicted), total(positive & ~predicted)
    tn, fp = total(negative & ~predicted), total(negative & predicted)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {
            "recall_elliptical": tp / (tp + fn),
            "recall_spiral": tn / (tn + fp),
            "precision_elliptical": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
            "precision_spiral": np.where(tn + fn > 0, tn / (tn + fn), 0.0),
            "f1_elliptical": np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
            "f1_spiral": np.where(tn > 0, 2 * tn / (2 * tn + fn + fp), 0.0),
            "accuracy": (tp + tn) / weights.sum(axis=1),
            "brier": (weights @ (p - truth) ** 2) / weights.sum(axis=1),
            "roc_auc": _weighted_auc(truth, p, weights),
        }
    values["f1_macro"] = (values["f1_elliptical"] + values["f1_spiral"]) / 2
    return values


def _weighted_auc(truth: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count one half) of each weighting: positive-negative pairs ranked right."""
    order = np.argsort(p, kind="mergesort")
    scores, positive = p[order], truth[order] == 1
    w = weights[:, order]
    negatives = np.where(positive, 0.0, w)
    starts = np.searchsorted(scores, scores, side="left")
    ends = np.searchsorted(scores, scores, side="right") - 1
    cumulative = np.cumsum(negatives, axis=1)
    before_group = np.where(starts > 0, cumulative[:, np.maximum(starts - 1, 0)], 0.0)
    tied = cumulative[:, ends] - before_group  # negatives with the same score
    pairs = np.where(positive, w, 0.0) * (before_group + 0.5 * tied)
    total_pos = np.where(positive, w, 0.0).sum(axis=1)
    return pairs.sum(axis=1) / (total_pos * negatives.sum(axis=1))


def _percentiles(draws: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    y_true: np.ndarray, p_elliptical: np.ndarray, draws: int = 2000, seed: int = 0
) -> dict[str, Interval]:
    """95% percentile bootstrap interval of each ``INTERVAL_METRICS`` value (rows resampled)."""
    truth, p = to_binary(y_true), np.asarray(p_elliptical, dtype="float64")
    point = _weighted_metrics(truth, p, np.ones((1, len(truth))))
    sampled = _weighted_metrics(truth, p, _draw_weights(len(truth), draws, seed))
    return {name: Interval(float(point[name][0]), *_percentiles(sampled[name])) for name in INTERVAL_METRICS}


def paired_bootstrap(
    y_true: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    draws: int = 2000,
    seed: int = 0,
) -> dict[str, Interval]:
    """``first`` minus ``second`` for each ``INTERVAL_METRICS`` value, both models scored on the
    same resampled rows in every draw (a paired bootstrap)."""
    truth = to_binary(y_true)
    a, b = np.asarray(first, dtype="float64"), np.asarray(second, dtype="float64")
    ones, weights = np.ones((1, len(truth))), _draw_weights(len(truth), draws, seed)
    point_a, point_b = _weighted_metrics(truth, a, ones), _weighted_metrics(truth, b, ones)
    draws_a, draws_b = _weighted_metrics(truth, a, weights), _weighted_metrics(truth, b, weights)
    return {
        name: Interval(
            float(point_a[name][0] - point_b[name][0]), *_percentiles(draws_a[name] - draws_b[name])
        )
        for name in INTERVAL_METRICS
    }


# --- calibration ------------------------------------------------------------------------------


def brier_score(y_true: np.ndarray, p_elliptical: np.ndarray) -> float:
    return float(np.mean((np.asarray(p_elliptical, dtype="float64") - to_binary(y_true)) ** 2))


def reliability_curve(y_true: np.ndarray, p_elliptical: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per bin of equal width in p_elliptical: rows, mean predicted and observed elliptical share."""
    truth, p = to_binary(y_true), np.asarray(p_elliptical, dtype="float64")
    which = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for position in range(bins):
        inside = which == position
        count = int(inside.sum())
        rows.append(
            {
                "bin_low": position / bins,
                "bin_high": (position + 1) / bins,
                "rows": count,
                "mean_predicted": float(p[inside].mean()) if count else float("nan"),
                "observed_elliptical": float(truth[inside].mean()) if count else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(y_true: np.ndarray, p_elliptical: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean gap between predicted and observed elliptical share over the bins."""
    curve = reliability_curve(y_true, p_elliptical, bins)
    used = curve[curve["rows"] > 0]
    gaps = (used["mean_predicted"] - used["observed_elliptical"]).abs()
    return float((gaps * used["rows"]).sum() / used["rows"].sum())


def calibration_metrics(y_true: np.ndarray, p_elliptical: np.ndarray, bins: int = 10) -> dict[str, float]:
    return {
        "brier": brier_score(y_true, p_elliptical),
        "ece": expected_calibration_error(y_true, p_elliptical, bins),
    }


# --- agreement with the volunteers -----------------------------------------------------------


def elliptical_vote_share(p_el: np.ndarray, p_cs: np.ndarray) -> np.ndarray:
    """GZ1's debiased elliptical share p_el / (p_el + p_cs); NaN where both are 0."""
    el, cs = np.asarray(p_el, dtype="float64"), np.asarray(p_cs, dtype="float64")
    total = el + cs
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, el / total, np.nan)


def volunteer_agreement(p_elliptical: np.ndarray, p_el: np.ndarray, p_cs: np.ndarray) -> float:
    """Spearman rank correlation of ``p_elliptical`` with the elliptical vote share (NaN below 3 rows)."""
    share = elliptical_vote_share(p_el, p_cs)
    usable = np.isfinite(share) & np.isfinite(np.asarray(p_elliptical, dtype="float64"))
    if usable.sum() < 3:
        return float("nan")
    return float(spearmanr(np.asarray(p_elliptical)[usable], share[usable]).statistic)


def agreement_interval(
    p_elliptical: np.ndarray, p_el: np.ndarray, p_cs: np.ndarray, draws: int = 2000, seed: int = 0
) -> Interval:
    """``volunteer_agreement`` and its 95% bootstrap interval (rows resampled)."""
    share = elliptical_vote_share(p_el, p_cs)
    proba = np.asarray(p_elliptical, dtype="float64")
    usable = np.isfinite(share) & np.isfinite(proba)
    proba, share = proba[usable], share[usable]
    value = volunteer_agreement(proba, share, 1 - share)
    rng = np.random.default_rng(seed)
    sampled = []
    for _ in range(draws):
        rows = rng.integers(0, len(share), len(share))
        sampled.append(spearmanr(proba[rows], share[rows]).statistic)
    return Interval(value, *_percentiles(np.asarray(sampled, dtype="float64")))
