"""Figures for the tracking server: confusion matrix, ROC curve and reliability curve.

Drawn with scikit-learn's displays rather than ``mlflow.models.evaluate``: that needs the model
logged first and writes its own metric names to the run, while these figures come from the
in-memory pipeline on the test split before the gate decides whether to register it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from galaxy_morphology.core.metrics import THRESHOLD, to_binary
from galaxy_morphology.core.schema import CLASSES


def confusion_figure(y_true: np.ndarray, p_elliptical: np.ndarray, title: str) -> Figure:
    figure, axes = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        to_binary(y_true),
        (np.asarray(p_elliptical) >= THRESHOLD).astype(int),
        labels=[0, 1],
        display_labels=list(CLASSES),
        cmap="Blues",
        ax=axes,
        colorbar=False,
    )
    axes.set_title(title)
    figure.tight_layout()
    return figure


def roc_figure(y_true: np.ndarray, p_elliptical: np.ndarray, title: str) -> Figure:
    figure, axes = plt.subplots(figsize=(4.5, 4))
    RocCurveDisplay.from_predictions(to_binary(y_true), p_elliptical, name="elliptical", ax=axes)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def reliability_figure(curve: pd.DataFrame, title: str) -> Figure:
    """Observed elliptical share against mean P(elliptical) per bin (``metrics.reliability_curve``)."""
    figure, axes = plt.subplots(figsize=(4.5, 4))
    used = curve[curve["rows"] > 0]
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    axes.plot(used["mean_predicted"], used["observed_elliptical"], marker="o", label="model")
    for _, row in used.iterrows():
        axes.annotate(str(int(row["rows"])), (row["mean_predicted"], row["observed_elliptical"]), fontsize=7)
    axes.set_xlabel("mean predicted P(elliptical)")
    axes.set_ylabel("observed elliptical share")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    return figure


def save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=110)
    plt.close(figure)
