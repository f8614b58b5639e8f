"""Crafted tree node tables are refused after loading, before any traversal can crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.pipeline import Pipeline

from galaxy_morphology.core.families import TRUSTED_TYPES, build_pipeline
from galaxy_morphology.core.schema import FEATURE_COLUMNS
from galaxy_morphology.core.trees import TreeCheckError, check_trees
from tests.factories import raw_frame

REPO_ROOT = Path(__file__).resolve().parents[2]


def fitted(family: str) -> Pipeline:
    frame = raw_frame(n_spiral=20, n_elliptical=10, n_uncertain=0)
    pipeline = build_pipeline(family, 0)
    if family == "hist_gradient_boosting":
        pipeline.set_params(classifier__max_iter=5, classifier__min_samples_leaf=2)
    if family == "random_forest":
        pipeline.set_params(classifier__n_estimators=3)
    return pipeline.fit(frame[list(FEATURE_COLUMNS)], frame["elliptical"])


def reloaded(pipeline: Pipeline, tmp_path: Path) -> Pipeline:
    """Through skops with the project's trusted list, as loading a model does."""
    path = tmp_path / "pipeline.skops"
    skops.io.dump(pipeline, path)
    return skops.io.load(path, trusted=TRUSTED_TYPES)


def tree_nodes(pipeline: Pipeline) -> np.ndarray:
    """The first tree's node table, as a writable view (sklearn Tree or boosting predictor)."""
    classifier = pipeline[-1]
    if hasattr(classifier, "_predictors"):
        return next(p.nodes for iteration in classifier._predictors for p in iteration if len(p.nodes) > 1)
    tree = classifier.estimators_[0].tree_ if hasattr(classifier, "estimators_") else classifier.tree_
    return tree.__getstate__()["nodes"]


@pytest.mark.parametrize(
    ("family", "trees"), [("decision_tree", 1), ("random_forest", 3), ("hist_gradient_boosting", 5)]
)
def test_fitted_trees_pass(family: str, trees: int, tmp_path: Path) -> None:
    assert check_trees(reloaded(fitted(family), tmp_path)) == trees


def test_models_without_trees_have_none() -> None:
    assert check_trees(fitted("logistic")) == 0


CRAFTED = {
    # family -> (left field, right field, feature field)
    "decision_tree": ("left_child", "right_child", "feature"),
    "hist_gradient_boosting": ("left", "right", "feature_idx"),
}


@pytest.mark.parametrize("family", list(CRAFTED))
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("child far outside", "outside nodes"),
        ("child pointing back", "outside nodes"),
        ("feature outside the input", "splits on feature"),
    ],
)
def test_a_crafted_node_table_is_refused(family: str, edit: str, message: str, tmp_path: Path) -> None:
    pipeline = fitted(family)
    left, right, feature = CRAFTED[family]
    nodes = tree_nodes(pipeline)
    if edit == "child far outside":
        nodes[right][0] = 1_000_000_000
    elif edit == "child pointing back":
        nodes[left][0] = 0
    else:
        nodes[feature][0] = 1_000_000_000
    loaded = reloaded(pipeline, tmp_path)  # loading itself traverses nothing
    with pytest.raises(TreeCheckError, match=message):
        check_trees(loaded)


def test_a_categorical_boosting_split_is_refused(tmp_path: Path) -> None:
    pipeline = fitted("hist_gradient_boosting")
    tree_nodes(pipeline)["is_categorical"][0] = 1
    with pytest.raises(TreeCheckError, match="categorical"):
        check_trees(reloaded(pipeline, tmp_path))


CRASH = """
import sys
import numpy as np
from tests.core.test_trees import fitted, tree_nodes
from tests.factories import raw_frame
from galaxy_morphology.core.schema import FEATURE_COLUMNS
pipeline = fitted("hist_gradient_boosting")
tree_nodes(pipeline)["feature_idx"][0] = 1_000_000_000
rows = raw_frame(n_spiral=500, n_elliptical=500, n_uncertain=0)[list(FEATURE_COLUMNS)]
pipeline.predict_proba(rows)
"""


def test_the_check_guards_against_a_real_crash() -> None:
    """Without the check, scoring 1,000 rows through the crafted table kills the process."""
    result = subprocess.run([sys.executable, "-c", CRASH], cwd=REPO_ROOT, capture_output=True, timeout=300)
    assert result.returncode < 0, (result.returncode, result.stderr.decode()[-2000:])
