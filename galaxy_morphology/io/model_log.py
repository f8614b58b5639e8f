"""Writing a model version's files: the fitted pipeline as skops, and the pyfunc logged around it.

The registry (``io.registry``) registers what ``log_pyfunc`` logs; reading a version needs
neither skops nor scikit-learn until its pipeline is loaded.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import skops.io
from mlflow.models.model import ModelInfo
from sklearn.pipeline import Pipeline

from galaxy_morphology.core.families import TRUSTED_TYPES
from galaxy_morphology.core.features import input_columns
from galaxy_morphology.core.metrics import to_labels
from galaxy_morphology.io.model_files import PIPELINE_ARTIFACT
from galaxy_morphology.io.registry import RegistryError

MODEL_NAME_IN_RUN = "model"


def dump_pipeline(pipeline: Pipeline, path: Path) -> None:
    """Serialize with skops and refuse any type outside the explicit trusted list."""
    skops.io.dump(pipeline, path)
    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    if untrusted:
        path.unlink()
        raise RegistryError(f"the pipeline holds types outside core.families.TRUSTED_TYPES: {untrusted}")


def log_pyfunc(pipeline: Pipeline, example: pd.DataFrame, python_model: Path, folder: Path) -> ModelInfo:
    """Log the pyfunc (code file, skops artifact, signature, input example) to the active run."""
    skops_path = folder / "pipeline.skops"
    dump_pipeline(pipeline, skops_path)
    example = example[list(input_columns(pipeline))].astype("float64").reset_index(drop=True)
    proba = pipeline.predict_proba(example)[:, 1]
    output = pd.DataFrame({"label": to_labels(proba), "p_elliptical": np.asarray(proba, dtype="float64")})
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME_IN_RUN,
        python_model=str(python_model),
        artifacts={PIPELINE_ARTIFACT: str(skops_path)},
        signature=mlflow.models.infer_signature(example, output),
        input_example=example,
        pip_requirements=requirements(),
    )


def requirements() -> list[str]:
    """The model's pip requirements: the installed versions it was fitted and logged with."""
    packages = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")
    return [f"{name}=={version(name)}" for name in packages]
