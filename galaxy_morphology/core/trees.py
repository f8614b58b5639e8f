"""Tree node tables checked before scikit-learn's compiled traversal ever reads them.

skops leaves ``sklearn.tree._tree.Tree`` and the histogram boosting ``TreePredictor``
untrusted, for a good reason: their node tables hold child and feature indices that the
compiled traversal follows without bounds checks, so a crafted table reads outside its
arrays (scoring 1,000 rows through one segfaults the process) or loops forever. Loading
builds the objects without traversing them; ``check_trees`` then walks everything the loaded
model holds and refuses, with the estimator and node named, any table whose traversal could
leave its arrays:

- every split node's two children come after it and inside the table (the order scikit-learn
  writes them in), so every walk ends at a leaf after at most one step per node;
- every split's feature is a column of the input the estimator holding it validates
  (``n_features_in_``; the smallest one from a pipeline step down, since an ensemble passes
  its input to its members unchecked);
- no boosting node is a categorical split (this project never trains one; their bitsets
  would need the same care).

A table that passes reads only inside its arrays, so it cannot crash the process; loading
itself runs no code from the file (skops builds only the named, trusted types).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.pipeline import Pipeline
from sklearn.tree._tree import NODE_DTYPE, TREE_LEAF, Tree

UNBOUNDED = np.iinfo(np.int64).max


class TreeCheckError(ValueError):
    """A tree's node table could make the compiled traversal read outside its arrays."""


def check_trees(model: Any) -> int:
    """Check every ``Tree`` and ``TreePredictor`` reachable from ``model``; return how many."""
    return _walk(model, UNBOUNDED, "model", set())


def _walk(item: Any, width: int, where: str, seen: set[int]) -> int:
    if id(item) in seen or isinstance(item, str | bytes | int | float | bool | np.ndarray | type(None)):
        return 0
    seen.add(id(item))
    if isinstance(item, Tree):
        _check_tree(item, width, where)
        return 1
    if isinstance(item, TreePredictor):
        _check_predictor(item, width, where)
        return 1
    if isinstance(item, dict):
        children = [(f"{where}[{key!r}]", value) for key, value in item.items()]
    elif isinstance(item, list | tuple | set | frozenset):
        children = [(f"{where}[{number}]", value) for number, value in enumerate(item)]
    elif hasattr(item, "__dict__"):
        # a pipeline's steps each validate their own input; an ensemble's members do not
        declared = getattr(item, "n_features_in_", None)
        if isinstance(item, Pipeline):
            width = UNBOUNDED
        elif isinstance(declared, int | np.integer):
            width = min(width, int(declared))
        children = [(f"{where}.{name}", value) for name, value in vars(item).items()]
    else:
        return 0
    return sum(_walk(value, width, name, seen) for name, value in children)


def _check_tree(tree: Tree, width: int, where: str) -> None:
    nodes = tree.__getstate__()["nodes"]
    if nodes.dtype != np.dtype(NODE_DTYPE):
        raise TreeCheckError(f"{where}: unexpected node layout {nodes.dtype}")
    if len(nodes) == 0:
        raise TreeCheckError(f"{where}: the tree has no node")
    split = np.flatnonzero(nodes["left_child"] != TREE_LEAF)
    _check_splits(where, len(nodes), split, nodes["left_child"], nodes["right_child"])
    _check_features(where, split, nodes["feature"], min(width, int(tree.n_features)))


def _check_predictor(predictor: TreePredictor, width: int, where: str) -> None:
    nodes = getattr(predictor, "nodes", None)
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1:
        raise TreeCheckError(f"{where}: the node table is not scikit-learn's predictor layout")
    if len(nodes) == 0:
        raise TreeCheckError(f"{where}: the tree has no node")
    if nodes["is_categorical"].any():
        raise TreeCheckError(f"{where}: categorical splits are not supported")
    split = np.flatnonzero(nodes["is_leaf"] == 0)
    _check_splits(where, len(nodes), split, nodes["left"], nodes["right"])
    _check_features(where, split, nodes["feature_idx"], width)


def _check_splits(where: str, size: int, split: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    for name, child in (("left", left), ("right", right)):
        index = child[split].astype(np.int64)
        bad = (index <= split) | (index >= size)
        if bad.any():
            node = int(split[np.argmax(bad)])
            outside = f"outside nodes {node + 1}..{size - 1}"
            raise TreeCheckError(f"{where}: node {node} has {name} child {int(child[node])}, {outside}")


def _check_features(where: str, split: np.ndarray, feature: np.ndarray, width: int) -> None:
    index = feature[split].astype(np.int64)
    bad = (index < 0) | (index >= width)
    if bad.any():
        node = int(split[np.argmax(bad)])
        raise TreeCheckError(f"{where}: node {node} splits on feature {int(feature[node])} of {width}")
