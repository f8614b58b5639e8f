"""The common valid request, answered without MLflow's second parse, DataFrame and schema pass.

MLflow's scoring app parses a body the guard has already parsed, builds a DataFrame, enforces
the signature column by column, runs the model in a thread, turns the output DataFrame into
records and writes them as JSON: for one record that costs more than the pipeline itself. The
fast path takes the guard's parsed body and answers a request only when it is plainly valid:

- JSON (``application/json``, UTF-8) holding only ``dataframe_records`` or ``dataframe_split``
  (no ``params``), every row with the signature's columns, each a JSON number written with a
  fraction or an exponent (Python ``float``: the signature's ``double``); other columns of the
  catalogue row may come along and are ignored, as MLflow ignores them;
- every row passes the project's checks (``prepare.usable_rows``, the same rules as the model's
  own ``predict``).

Then it scores the float array with the model's pipeline and writes the bytes MLflow would
write (``{"predictions": [{"label": ..., "p_elliptical": ...}]}``). Anything else goes to
MLflow's app unchanged (integers, text, missing or extra columns, ``params``, other formats, a
row the checks refuse, a column named twice), so every refusal keeps its status and message.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from galaxy_morphology.core.metrics import to_labels
from galaxy_morphology.core.prepare import column_rules, usable_rows
from galaxy_morphology.serving.pyfunc import GalaxyMorphologyModel

JSON_TYPES = frozenset({"application/json", "application/json;charset=utf-8"})
SPLIT_KEYS = frozenset({"columns", "data", "index"})


class FastPath:
    """Score a plainly valid parsed request (see the module's docstring), or say ``None``."""

    def __init__(self, model: GalaxyMorphologyModel, signature_types: dict[str, str]) -> None:
        self.model = model
        self.columns = model.columns
        self.names = frozenset(self.columns)
        self.rules = column_rules(self.columns)
        # only a signature of doubles over exactly the pipeline's columns maps to a float array
        self.enabled = signature_types == dict.fromkeys(self.columns, "double")

    def answer(self, content_type: str, payload: Any) -> bytes | None:
        """MLflow's answer to ``payload`` as bytes, or ``None`` when MLflow's app must answer."""
        if not self.enabled or content_type.lower().replace(" ", "") not in JSON_TYPES:
            return None
        values = self.table(payload)
        if values is None or not usable_rows(values, self.rules).all():
            return None
        return predictions_json(self.model.p_elliptical(values))

    def table(self, payload: Any) -> np.ndarray | None:
        """The rows as float64, one column per name of the signature, or ``None``."""
        if not isinstance(payload, dict) or len(payload) != 1:
            return None
        if "dataframe_records" in payload:
            return self._records(payload["dataframe_records"])
        if "dataframe_split" in payload:
            return self._split(payload["dataframe_split"])
        return None

    def _records(self, records: Any) -> np.ndarray | None:
        if not isinstance(records, list) or not records:
            return None
        rows = []
        for record in records:
            if not isinstance(record, dict) or not self.names <= record.keys():
                return None
            row = [record[name] for name in self.columns]
            if not _floats(row):
                return None
            rows.append(row)
        return np.array(rows, dtype="float64")

    def _split(self, split: Any) -> np.ndarray | None:
        if not isinstance(split, dict) or not SPLIT_KEYS.issuperset(split):
            return None
        columns, rows = split.get("columns"), split.get("data")
        if not isinstance(columns, list) or not isinstance(rows, list) or not rows:
            return None
        if not self.names.issubset(columns) or len(set(columns)) != len(columns):
            return None
        width = len(columns)
        for row in rows:
            if not isinstance(row, list) or len(row) != width:
                return None
        order = [columns.index(name) for name in self.columns]
        table = [[row[position] for position in order] for row in rows]
        if not all(_floats(row) for row in table):
            return None
        return np.array(table, dtype="float64")


def _floats(values: list[Any]) -> bool:
    return all(type(value) is float for value in values)


def predictions_json(p_elliptical: np.ndarray) -> bytes:
    """The body MLflow's scoring app writes for the model's output frame."""
    labels = to_labels(p_elliptical).tolist()
    records = [
        {"label": label, "p_elliptical": p}
        for label, p in zip(labels, np.asarray(p_elliptical, dtype="float64").tolist(), strict=True)
    ]
    return json.dumps({"predictions": records}).encode()
