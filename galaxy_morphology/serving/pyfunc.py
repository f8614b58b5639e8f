"""The registered model's Python class: check the catalogue columns, score, name the class.

The fitted scikit-learn pipeline is an skops artifact loaded with the installed project's
list of trusted types. ``predict`` takes raw catalogue columns and returns ``label`` and
``p_elliptical`` per row; invalid rows are refused with a message naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from skops.io.exceptions import UntrustedTypesFoundException

from galaxy_morphology.core import prepare
from galaxy_morphology.core.families import TRUSTED_TYPES
from galaxy_morphology.core.features import input_columns
from galaxy_morphology.core.metrics import to_labels
from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.core.trees import TreeCheckError, check_trees
from galaxy_morphology.io.model_files import PIPELINE_ARTIFACT, UntrustedModelError

# the file MLflow logs as the model's code (models-from-code: nothing is cloudpickled)
MODEL_CODE = Path(__file__).with_name("model_code.py")


class GalaxyMorphologyModel(PythonModel):
    def load_context(self, context: Any) -> None:
        try:
            self.pipeline = skops.io.load(context.artifacts[PIPELINE_ARTIFACT], trusted=TRUSTED_TYPES)
            check_trees(self.pipeline)  # skops leaves trees untrusted: refuse a crafted node table
        except (UntrustedTypesFoundException, TreeCheckError) as error:
            raise UntrustedModelError(str(error)) from error
        self.columns = input_columns(self.pipeline)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            values = _checked(model_input, self.columns)
        except SchemaError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        return prediction_frame(self.p_elliptical(values))

    def p_elliptical(self, values: np.ndarray) -> np.ndarray:
        """P(elliptical) per row of checked values (float64, one column per name of ``columns``).

        The values go to the pipeline as one float array (its feature step reads the columns by
        position): no pandas work per request.
        """
        return self.pipeline.predict_proba(values)[:, 1]


def _checked(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(f"expected a table of catalogue columns, got {type(frame).__name__}")
    return prepare.model_input(frame, columns)


def prediction_frame(p_elliptical: np.ndarray) -> pd.DataFrame:
    """``label`` and ``p_elliptical`` per row."""
    proba = np.asarray(p_elliptical, dtype="float64")
    return pd.DataFrame({"label": to_labels(proba), "p_elliptical": proba}, copy=False)
