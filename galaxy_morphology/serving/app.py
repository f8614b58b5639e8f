"""The scoring server's ASGI app: MLflow's scoring app for a checked model folder, behind ``Guard``.

``galaxy serve`` starts ``uvicorn --factory galaxy_morphology.serving.app:create_app``; each
worker builds the app from the JSON in ``CONFIG_ENV`` (the model folder the launcher downloaded
and checked, and the request limits of the ``serving`` settings; the serving image gives only
its baked-in folder, and the limits keep their defaults unless the JSON names them). Loading goes through
``io.model_files.load_model_folder``, so a folder edited in the artifact store is refused
before any of it runs. ``/ping``, ``/health``, ``/version`` and ``/invocations`` are MLflow's
own, with the same answers for valid requests; the plainly valid ones are answered by
``serving.fast_path`` with the bytes MLflow would write, at a fraction of its cost.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from galaxy_morphology.io.model_files import load_model_folder
from galaxy_morphology.serving.fast_path import FastPath
from galaxy_morphology.serving.guard import ASGIApp, Guard, Limits
from galaxy_morphology.serving.pyfunc import GalaxyMorphologyModel

CONFIG_ENV = "GALAXY_SCORING_APP_CONFIG"


class KnownColumnsOnly:
    """The pyfunc, with request columns outside its signature dropped before MLflow sees them.

    MLflow's schema check would otherwise log the names of extra columns ("Found extra inputs
    ..."), putting request-supplied text into the server's log; it ignores them anyway.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.metadata = model.metadata
        schema = model.metadata.get_input_schema()
        self.columns = None if schema is None else frozenset(schema.input_names())

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        if (
            self.columns is not None
            and isinstance(data, pd.DataFrame)
            and not self.columns.issuperset(data.columns)
        ):
            data = data[[name for name in data.columns if name in self.columns]]
        return self.model.predict(data, params=params)


def app_config(model_folder: Path, limits: Limits) -> str:
    """The value of ``CONFIG_ENV`` for a server of the model in ``model_folder``."""
    return json.dumps({"model_folder": str(model_folder), "limits": dataclasses.asdict(limits)})


def create_app() -> ASGIApp:
    """uvicorn's app factory: the checked model behind MLflow's scoring app and ``Guard``."""
    config = json.loads(os.environ[CONFIG_ENV])
    model = load_model_folder(Path(config["model_folder"]))
    scoring_app = scoring_server.init(KnownColumnsOnly(model))  # type: ignore[arg-type]  # duck-typed
    return Guard(scoring_app, Limits(**config.get("limits", {})), fast_path(model))


def fast_path(model: Any) -> FastPath | None:
    """The fast path for a loaded pyfunc of this project's class (``None`` for any other)."""
    try:
        python_model = model.unwrap_python_model()
    except MlflowException:  # not a Python-class pyfunc
        return None
    schema = model.metadata.get_input_schema()
    if not isinstance(python_model, GalaxyMorphologyModel) or schema is None:
        return None
    types = {spec.name: spec.type.name for spec in schema.inputs}
    return FastPath(python_model, types)
