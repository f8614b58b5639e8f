"""Model families, their search spaces, and the single scikit-learn pipeline they live in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scipy.stats import loguniform, randint, uniform
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from galaxy_morphology.core.boosting import GradientBoosting
from galaxy_morphology.core.features import CatalogueFeatures
from galaxy_morphology.core.forest import RandomForest


@dataclass(frozen=True)
class FamilySpec:
    name: str
    scaled: bool  # distance- or gradient-based families get a StandardScaler
    reference: bool  # one of the reference study's three families
    space: dict[str, Any]
    simplicity: int = 0  # lower is simpler and faster: the one-standard-error rule prefers it

    def build(self, seed: int) -> Pipeline:
        return build_pipeline(self.name, seed)


def _classifier(name: str, seed: int) -> Any:
    if name == "knn":
        return KNeighborsClassifier()
    if name == "decision_tree":
        return DecisionTreeClassifier(random_state=seed)
    if name == "random_forest":
        return RandomForest(random_state=seed, n_jobs=1)
    if name == "hist_gradient_boosting":
        return GradientBoosting(random_state=seed)
    if name == "logistic":
        return LogisticRegression(max_iter=2_000)
    raise ValueError(f"training.families: unknown family {name!r}")


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        FamilySpec(
            "knn",
            simplicity=2,
            scaled=True,
            reference=True,
            space={
                "classifier__n_neighbors": randint(1, 60),
                "classifier__weights": ["uniform", "distance"],
                "classifier__p": [1, 2],
            },
        ),
        FamilySpec(
            "decision_tree",
            simplicity=1,
            scaled=False,
            reference=True,
            space={
                "classifier__max_depth": [None, 3, 4, 5, 6, 8, 10, 12, 16, 20],
                "classifier__min_samples_leaf": randint(1, 40),
                "classifier__criterion": ["gini", "entropy"],
                "classifier__class_weight": [None, "balanced"],
            },
        ),
        FamilySpec(
            "random_forest",
            simplicity=3,
            scaled=False,
            reference=True,
            space={
                "classifier__n_estimators": randint(100, 400),
                "classifier__max_depth": [None, 6, 10, 14, 20, 30],
                "classifier__min_samples_leaf": randint(1, 10),
                "classifier__max_features": ["sqrt", 0.3, 0.5, 0.7],
                "classifier__class_weight": [None, "balanced", "balanced_subsample"],
            },
        ),
        FamilySpec(
            "hist_gradient_boosting",
            simplicity=4,
            scaled=False,
            reference=False,
            space={
                "classifier__learning_rate": loguniform(0.02, 0.3),
                "classifier__max_iter": randint(100, 500),
                "classifier__max_leaf_nodes": randint(8, 64),
                "classifier__min_samples_leaf": randint(5, 60),
                "classifier__l2_regularization": loguniform(1e-4, 10.0),
                "classifier__max_features": uniform(0.5, 0.5),
                "classifier__class_weight": [None, "balanced"],
            },
        ),
        FamilySpec(
            "logistic",
            simplicity=0,
            scaled=True,
            reference=False,
            space={
                "classifier__C": loguniform(1e-3, 1e2),
                "classifier__class_weight": [None, "balanced"],
            },
        ),
    )
}


def build_pipeline(family: str, seed: int) -> Pipeline:
    """Raw catalogue columns -> features -> (scaler) -> classifier."""
    spec = FAMILIES.get(family)
    if spec is None:
        raise ValueError(f"training.families: unknown family {family!r}")
    steps: list[tuple[str, Any]] = [("features", CatalogueFeatures())]
    if spec.scaled:
        steps.append(("scale", StandardScaler()))
    steps.append(("classifier", _classifier(family, seed)))
    return Pipeline(steps)


def describe_space(space: dict[str, Any]) -> dict[str, str]:
    """A readable form of a search space, for tracking."""
    described = {}
    for key, value in space.items():
        name = key.removeprefix("classifier__")
        if isinstance(value, list):
            described[name] = repr(value)
        else:
            dist = value.dist.name
            low, high = value.support()
            described[name] = f"{dist}({low:g}, {high:g})"
    return described


# Types skops may load beyond its own defaults (which already trust scikit-learn's estimators,
# numpy and the builtins): the pipeline's own classes and what its fitted estimators hold.
# skops leaves two of them untrusted, sklearn.tree._tree.Tree and the boosting TreePredictor,
# because a crafted node table crashes the compiled traversal: every loaded model passes
# core.trees.check_trees before it scores (a crafted table is refused there).
TRUSTED_TYPES: list[str] = [
    "galaxy_morphology.core.features.CatalogueFeatures",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "galaxy_morphology.core.forest.RandomForest",
    "galaxy_morphology.core.boosting.GradientBoosting",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.ensemble._voting.VotingClassifier",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.utils._bunch.Bunch",
    "numpy.dtype",
    "collections.OrderedDict",
    "builtins.slice",
    # the calibration step (core/training.py, calibrated): sigmoid or isotonic on the classifier
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.isotonic.IsotonicRegression",
]
