"""The registered pyfunc in process: the pipeline's probabilities, and refusals naming the field."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from galaxy_morphology.core.schema import FEATURE_COLUMNS
from galaxy_morphology.serving.pyfunc import GalaxyMorphologyModel, prediction_frame
from tests.factories import raw_frame
from tests.serving.champion import CHAMPION_URI, TrainedStore, tracking_env


@pytest.fixture(scope="module")
def champion(trained_store: TrainedStore) -> mlflow.pyfunc.PyFuncModel:
    with tracking_env(trained_store.tracking_uri, trained_store.artifact_root):
        return mlflow.pyfunc.load_model(CHAMPION_URI)


def test_predict_gives_the_pipelines_probabilities_and_labels(champion: mlflow.pyfunc.PyFuncModel) -> None:
    rows = raw_frame(3, 3, 0, seed=5)
    pipeline = champion.unwrap_python_model().pipeline
    expected = pipeline.predict_proba(rows[list(FEATURE_COLUMNS)])[:, 1]
    predicted = champion.predict(rows)
    assert list(predicted.columns) == ["label", "p_elliptical"]
    np.testing.assert_array_equal(predicted["p_elliptical"].to_numpy(), expected)
    assert predicted["label"].tolist() == ["elliptical" if p >= 0.5 else "spiral" for p in expected]
    # one record with only the model's columns gets the same answer
    one = rows.head(1)[list(FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(champion.predict(one), predicted.head(1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"deVAB_r": 1.5}, r"1 invalid row\(s\): row 0: deVAB_r: axis ratio 1\.5 outside \(0, 1\]"),
        ({"mag_r": np.nan}, r"1 invalid row\(s\): row 0: mag_r: missing value \(NaN or empty\)"),
        ({"stellar_mass": -9999.0}, r"stellar_mass: -9999 sentinel"),
    ],
)
def test_a_bad_row_is_refused_naming_the_field(
    champion: mlflow.pyfunc.PyFuncModel, change: dict[str, float], message: str
) -> None:
    with pytest.raises(MlflowException, match=message) as error:
        champion.predict(raw_frame(1, 0, 0).assign(**change))
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_class_refuses_what_is_not_a_table(champion: mlflow.pyfunc.PyFuncModel) -> None:
    model: GalaxyMorphologyModel = champion.unwrap_python_model()
    with pytest.raises(MlflowException, match="expected a table of catalogue columns, got ndarray"):
        model.predict(None, np.zeros((1, len(FEATURE_COLUMNS))))


def test_prediction_frame_labels_at_one_half() -> None:
    frame = prediction_frame(np.array([0.2, 0.5, 0.9]))
    assert frame["label"].tolist() == ["spiral", "elliptical", "elliptical"]
    assert frame["p_elliptical"].dtype == np.float64
