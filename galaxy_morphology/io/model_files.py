"""What a registered model's folder may hold before anything in it is loaded.

A model version's folder lives in the artifact store, which anyone with write access to the
store can edit. Loading it with ``mlflow.pyfunc.load_model`` alone would run whatever its
``MLmodel`` names: a cloudpickled object, a loader module, extra code folders put first on
``sys.path``, and the model's own copy of its code file. So the folder is checked first, and
loading goes ahead only when:

- ``MLmodel`` has the one ``python_function`` flavour this project logs, with MLflow's
  models-from-code loader and no key this project does not write (no pickle, no code paths,
  no model config);
- its code file is byte for byte the installed project's ``model_code.py``, which only names
  the installed pyfunc class (so the code that runs is the installed code);
- its one artifact, the skops pipeline, is a regular file inside the folder.

The skops file itself is then loaded by the installed pyfunc class with the installed list of
trusted types (``core.families.TRUSTED_TYPES``); nothing in the folder can widen that list.

A model logged under other package versions than the installed ones still loads, with a
warning naming each difference (``requirement_mismatches``): the same warning as MLflow's own
check, which maps every installed module to its distribution and costs about a second a load.
"""

from __future__ import annotations

import logging
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.models import Model, ModelSignature
from packaging.requirements import InvalidRequirement, Requirement

# the installed code file every version of this project is logged with (serving/model_code.py)
INSTALLED_MODEL_CODE = Path(__file__).resolve().parents[1] / "serving" / "model_code.py"
MLMODEL = "MLmodel"
FLAVOUR = "python_function"
LOADER = "mlflow.pyfunc.loaders.code_model"
PIPELINE_ARTIFACT = "pipeline"
# the keys MLflow writes for this project's models-from-code pyfunc, and nothing else
FLAVOUR_KEYS = frozenset(
    {
        "artifacts",
        "cloudpickle_version",
        "code",
        "env",
        "loader_module",
        "model_code_path",
        "python_version",
        "streamable",
    }
)


log = logging.getLogger(__name__)


class ModelFolderError(RuntimeError):
    """The model folder holds something this project never logs; nothing in it was run."""


class UntrustedModelError(RuntimeError):
    """The pipeline file holds a type outside the trusted list, or a tree its checks refuse."""


def download_model(model_uri: str, folder: Path, tracking_uri: str | None = None) -> Path:
    """The model's files, copied from the artifact store into ``folder``; nothing is loaded.

    ``tracking_uri`` (also the registry's) defaults to the process-wide MLflow URIs. A
    ``models:/`` URI is resolved through that store to its logged model's artifact location,
    so the download never depends on the process-wide URIs.
    """
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=_artifact_location(client, model_uri), dst_path=str(folder), tracking_uri=tracking_uri
    )
    return Path(local)


def model_signature(model_uri: str, tracking_uri: str | None = None) -> ModelSignature | None:
    """The signature in the model's ``MLmodel`` file: only that file is downloaded, nothing is loaded."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    location = _artifact_location(client, model_uri).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="galaxy-mlmodel-") as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location}/{MLMODEL}", dst_path=folder, tracking_uri=tracking_uri
        )
        return Model.load(local).signature


def _artifact_location(client: MlflowClient, model_uri: str) -> str:
    if not model_uri.startswith("models:/"):
        return model_uri
    target = model_uri.removeprefix("models:/").strip("/")
    if "@" in target:
        name, alias = target.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    elif "/" in target:
        name, number = target.split("/", 1)
        version = client.get_model_version(name, number)
    else:  # a logged model's id
        return str(client.get_logged_model(target).artifact_location)
    if version.model_id:
        return str(client.get_logged_model(version.model_id).artifact_location)
    return str(client.get_model_version_download_uri(name, version.version))


def load_model_folder(folder: Path, code_file: Path = INSTALLED_MODEL_CODE) -> Any:
    """The pyfunc in ``folder``, loaded by MLflow once ``check_model_folder`` has passed."""
    check_model_folder(folder, code_file)
    mismatches = requirement_mismatches(folder)
    if mismatches:
        log.warning(
            "model %s was logged with other package versions than this environment's: %s",
            folder,
            "; ".join(mismatches),
        )
    # MLflow's own version check is the one above, without its module-to-package scan
    return mlflow.pyfunc.load_model(str(folder), suppress_warnings=True)


def requirement_mismatches(folder: Path) -> list[str]:
    """The model's ``requirements.txt`` lines the installed packages do not satisfy."""
    path = folder / "requirements.txt"
    if not path.is_file():
        return []
    mismatches = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):  # pip options (-r, --index-url) name no package
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            mismatches.append(f"{line!r} (not a requirement pip can read)")
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            mismatches.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            mismatches.append(f"{requirement} (installed: {installed})")
    return mismatches


def check_model_folder(folder: Path, code_file: Path = INSTALLED_MODEL_CODE) -> None:
    """Refuse a model folder that would make loading run or trust anything not installed."""
    flavour = _flavour(folder)
    unknown = sorted(set(flavour) - FLAVOUR_KEYS)
    if unknown:
        raise ModelFolderError(f"MLmodel: python_function has keys this project never writes: {unknown}")
    if flavour.get("loader_module") != LOADER:
        raise ModelFolderError(
            f"MLmodel: loader_module is {flavour.get('loader_module')!r}, expected {LOADER!r}"
        )
    if flavour.get("code"):
        raise ModelFolderError("MLmodel: the model names code folders to import (code:); refused")
    _check_code_file(folder, flavour.get("model_code_path"), code_file)
    _check_artifacts(folder, flavour.get("artifacts"))


def _flavour(folder: Path) -> dict[str, Any]:
    path = folder / MLMODEL
    if not path.is_file():
        raise ModelFolderError(f"{folder} holds no MLmodel file")
    try:
        meta = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"MLmodel is not readable YAML: {error}") from None
    flavours = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavours, dict) or set(flavours) != {FLAVOUR}:
        found = sorted(flavours) if isinstance(flavours, dict) else flavours
        raise ModelFolderError(f"MLmodel: expected exactly the {FLAVOUR} flavour, found {found}")
    flavour = flavours[FLAVOUR]
    if not isinstance(flavour, dict):
        raise ModelFolderError(f"MLmodel: {FLAVOUR} is not a mapping")
    return flavour


def _check_code_file(folder: Path, logged: Any, code_file: Path) -> None:
    if not isinstance(logged, str) or Path(logged).name != code_file.name:
        raise ModelFolderError(
            f"MLmodel: model_code_path is {logged!r}, expected a file named {code_file.name}"
        )
    copy = folder / code_file.name
    if copy.is_symlink() or not copy.is_file():
        raise ModelFolderError(f"the model's {code_file.name} is missing or not a regular file")
    if copy.read_bytes() != code_file.read_bytes():
        raise ModelFolderError(
            f"the model's {code_file.name} differs from the installed project's {code_file}: "
            "refused (only the installed code may run when a model loads)"
        )


def _check_artifacts(folder: Path, artifacts: Any) -> None:
    if not isinstance(artifacts, dict) or set(artifacts) != {PIPELINE_ARTIFACT}:
        found = sorted(artifacts) if isinstance(artifacts, dict) else artifacts
        raise ModelFolderError(f"MLmodel: expected the one artifact {PIPELINE_ARTIFACT!r}, found {found}")
    entry = artifacts[PIPELINE_ARTIFACT]
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(relative, str):
        raise ModelFolderError("MLmodel: the pipeline artifact has no path")
    path = folder / relative
    inside = path.resolve().is_relative_to(folder.resolve())
    if not inside or path.is_symlink() or not path.is_file():
        raise ModelFolderError(
            f"MLmodel: the pipeline artifact {relative!r} is not a regular file in the model"
        )
