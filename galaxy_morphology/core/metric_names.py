"""Every value the monitoring flow computes for a batch, by name: the keys a range may use.

Kept apart from ``core/metrics.py`` (scikit-learn) so the settings can check range names
without importing it. ``tests/monitoring`` checks that a real batch yields exactly these.
"""

from __future__ import annotations

from galaxy_morphology.core.schema import CLASSES, FEATURE_COLUMNS

AVERAGES = ("macro", "weighted")
CONFUSION_KEYS = (
    "true_spiral_predicted_spiral",
    "true_spiral_predicted_elliptical",
    "true_elliptical_predicted_spiral",
    "true_elliptical_predicted_elliptical",
)
EVIDENTLY_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
# Spearman of p_elliptical with GZ1's debiased p_el / (p_el + p_cs) on the unlabelled rows:
# the one check that needs no labels
AGREEMENT = "agreement_spearman"


def classification_names() -> tuple[str, ...]:
    """What ``core.metrics.classification_metrics`` returns, in its order."""
    per_class = [f"{kind}_{name}" for name in CLASSES for kind in ("precision", "recall", "f1", "support")]
    averaged = [f"{kind}_{average}" for average in AVERAGES for kind in ("precision", "recall", "f1")]
    return (*per_class, *averaged, "accuracy", "roc_auc")


def monitored_names() -> tuple[str, ...]:
    """Every name the monitoring flow can compute (drift needs a training reference)."""
    return (
        *classification_names(),
        *(f"confusion.{key}" for key in CONFUSION_KEYS),
        *(f"evidently.{name}" for name in EVIDENTLY_NAMES),
        "drift_share",
        "drifted_columns",
        AGREEMENT,
        *(f"drift.{column}" for column in FEATURE_COLUMNS),
    )
