"""Histogram gradient boosting that scores a few records through all its trees at once.

scikit-learn's ``HistGradientBoostingClassifier`` predicts tree by tree: one Python call, one
output array and one OpenMP region per tree, about 4 µs each. With the 443 trees the tuned
model grows on the snapshot, that is 2 ms for one record, the largest part of the scoring
server's time.

``GradientBoosting`` keeps every tree's nodes in one flat table and walks all trees together,
one numpy step per tree level, when at most ``VECTOR_MAX_ROWS`` rows come in. It follows the
same rules as scikit-learn's traversal (``value <= threshold`` goes left, NaN goes where
the node sends missing values) and adds the leaf values to the baseline in the same order, so
its probabilities are bit-identical. Larger inputs, and models with categorical splits or
more than one tree per iteration, take scikit-learn's own path.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils.validation import check_is_fitted

VECTOR_MAX_ROWS = 64  # rows x trees indices per level stay small; batches use scikit-learn's path
# the private scikit-learn names the walk reads; when one is missing (a newer scikit-learn
# renamed it), predict_proba takes scikit-learn's own path: a registered model never becomes
# unloadable or unservable, only slower
PRIVATE_NAMES = ("_preprocess_X", "_predictors", "_baseline_prediction", "_loss")
NODE_FIELDS = (
    "feature_idx",
    "num_threshold",
    "missing_go_to_left",
    "left",
    "right",
    "is_leaf",
    "value",
    "depth",
    "is_categorical",
)


@dataclass(frozen=True)
class FlatTrees:
    roots: np.ndarray  # (n_trees,) index of each tree's first node in the flat table
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray  # children as flat-table indices
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    depth: int


def flatten(predictors: list) -> FlatTrees | None:
    """One table of every tree's nodes, or None when the fast walk does not apply."""
    if any(len(iteration) != 1 for iteration in predictors):
        return None  # several trees per iteration (multiclass)
    tables: list[np.ndarray] = [getattr(iteration[0], "nodes", np.empty(0)) for iteration in predictors]
    if any(not set(NODE_FIELDS) <= set(table.dtype.names or ()) for table in tables):
        return None  # a node layout this walk does not know
    nodes = np.concatenate(tables)
    if nodes["is_categorical"].any():
        return None
    sizes = np.array([len(table) for table in tables])
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    offset = np.repeat(roots, sizes)
    return FlatTrees(
        roots=roots,
        feature=nodes["feature_idx"].astype(np.intp),
        threshold=nodes["num_threshold"],
        missing_left=nodes["missing_go_to_left"].astype(bool),
        left=nodes["left"].astype(np.intp) + offset,
        right=nodes["right"].astype(np.intp) + offset,
        is_leaf=nodes["is_leaf"].astype(bool),
        value=nodes["value"],
        depth=int(nodes["depth"].max()),
    )


def leaf_values(trees: FlatTrees, X: np.ndarray) -> np.ndarray:
    """(rows, trees): the value of the leaf each row reaches in each tree."""
    node = np.tile(trees.roots, (X.shape[0], 1))
    rows = np.arange(X.shape[0])[:, None]
    for _ in range(trees.depth):
        data = X[rows, trees.feature[node]]
        with np.errstate(invalid="ignore"):
            go_left = np.where(np.isnan(data), trees.missing_left[node], data <= trees.threshold[node])
        child = np.where(go_left, trees.left[node], trees.right[node])
        node = np.where(trees.is_leaf[node], node, child)
    return trees.value[node]


# built on first use and kept beside the model, not in it, so the saved model is scikit-learn's;
# each entry holds the predictor list it was built from, so a refit model gets a new table
_FLAT: weakref.WeakKeyDictionary[GradientBoosting, tuple[list, FlatTrees | None]] = (
    weakref.WeakKeyDictionary()
)


class GradientBoosting(HistGradientBoostingClassifier):
    """``HistGradientBoostingClassifier`` with a bit-identical all-trees walk for a few rows."""

    def predict_proba(self, X: Any) -> np.ndarray:
        rows = getattr(X, "shape", (VECTOR_MAX_ROWS + 1,))[0]
        if rows > VECTOR_MAX_ROWS or getattr(self, "_preprocessor", None) is not None:
            return super().predict_proba(X)
        check_is_fitted(self)
        if not all(hasattr(self, name) for name in PRIVATE_NAMES):
            return super().predict_proba(X)
        X = self._preprocess_X(X, reset=False)
        trees = self._flat_trees()
        if trees is None:
            return super().predict_proba(X)
        # scikit-learn adds each tree's value to the baseline in turn: accumulate keeps that order
        steps = np.concatenate(
            [np.broadcast_to(self._baseline_prediction, (X.shape[0], 1)), leaf_values(trees, X)], axis=1
        )
        raw = np.add.accumulate(steps, axis=1)[:, -1:]
        return self._loss.predict_proba(raw)

    def _flat_trees(self) -> FlatTrees | None:
        cached = _FLAT.get(self)
        if cached is None or cached[0] is not self._predictors:
            cached = (self._predictors, flatten(self._predictors))
            _FLAT[self] = cached
        return cached[1]
