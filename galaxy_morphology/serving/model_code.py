"""The model's code file as MLflow logs it: it only names the installed project's pyfunc class."""

import mlflow

from galaxy_morphology.serving.pyfunc import GalaxyMorphologyModel

mlflow.models.set_model(GalaxyMorphologyModel())
