"""A model folder edited in the artifact store is refused before anything in it runs or loads.

Each test logs a real pyfunc (models-from-code, skops pipeline) to a temporary MLflow store,
edits its files where the store keeps them, as someone with write access to the store could,
and loads it through ``Registry.load``. A marker file shows whether the edited code ran.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import skops.io
import yaml
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from galaxy_morphology.core.families import build_pipeline
from galaxy_morphology.core.schema import FEATURE_COLUMNS
from galaxy_morphology.io.model_files import (
    INSTALLED_MODEL_CODE,
    ModelFolderError,
    check_model_folder,
    requirement_mismatches,
)
from galaxy_morphology.io.model_log import log_pyfunc
from galaxy_morphology.io.registry import Registry, RegistryError
from galaxy_morphology.io.tracking import Tracking
from galaxy_morphology.serving.pyfunc import MODEL_CODE
from tests.core.test_trees import fitted as fitted_with_trees
from tests.core.test_trees import tree_nodes
from tests.factories import raw_frame

NAME = "galaxy-morphology"


def fitted(family: str = "logistic") -> Pipeline:
    frame = raw_frame(n_spiral=20, n_elliptical=10, n_uncertain=0)
    return build_pipeline(family, 0).fit(frame[list(FEATURE_COLUMNS)], frame["elliptical"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path, Path]]:
    """A registry with version 1 of a logistic pipeline, the folder the store keeps it in, and a
    pristine copy of that folder (one store per module: creating a SQLite store is slow)."""
    folder = tmp_path_factory.mktemp("tamper")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    registry = Registry(Tracking(uri, folder / "mlartifacts"), NAME, "champion")
    mlflow.set_experiment(experiment_id=registry.tracking.experiment_id("tamper"))
    with mlflow.start_run(), tempfile.TemporaryDirectory() as scratch:
        info = log_pyfunc(fitted(), raw_frame(2, 2, 0), MODEL_CODE, Path(scratch))
    mlflow.register_model(info.model_uri, NAME)
    stored = Path(mlflow.get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    pristine = folder / "pristine"
    shutil.copytree(stored, pristine)
    try:
        yield registry, stored, pristine
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous)


@pytest.fixture()
def logged(store: tuple[Registry, Path, Path]) -> tuple[Registry, Path]:
    """The registry and the stored model folder, restored to what was logged."""
    registry, stored, pristine = store
    shutil.rmtree(stored)
    shutil.copytree(pristine, stored)
    mlflow.set_tracking_uri(registry.tracking.uri)
    mlflow.set_registry_uri(registry.tracking.uri)
    return registry, stored


def load(registry: Registry) -> None:
    registry.load(registry.resolve(f"models:/{NAME}/1"))


def edit_mlmodel(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / "MLmodel"
    meta = yaml.safe_load(path.read_text())
    change(meta["flavors"]["python_function"])
    path.write_text(yaml.safe_dump(meta))


def test_the_untouched_model_loads_and_scores(logged: tuple[Registry, Path]) -> None:
    registry, _ = logged
    loaded = registry.load(registry.resolve(f"models:/{NAME}/1"))
    predictions = loaded.score(raw_frame(2, 2, 0))
    assert list(predictions.columns) == ["label", "p_elliptical"]
    assert len(predictions) == 4


def test_the_installed_code_file_is_the_logged_one() -> None:
    assert MODEL_CODE.resolve() == INSTALLED_MODEL_CODE


def test_an_edited_code_file_does_not_run_and_does_not_load(
    logged: tuple[Registry, Path], tmp_path: Path
) -> None:
    registry, stored = logged
    marker = tmp_path / "code-ran"
    code = stored / "model_code.py"
    code.write_text(f"open({str(marker)!r}, 'w').close()\n" + code.read_text())
    with pytest.raises(RegistryError, match=r"model_code\.py differs from the installed"):
        load(registry)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("case", "change", "message"),
    [
        ("another loader", lambda f: f.update(loader_module="mlflow.sklearn"), "loader_module"),
        ("a pickled model", lambda f: f.update(python_model="python_model.pkl"), "python_model"),
        ("code on sys.path", lambda f: f.update(code="code"), "code folders"),
        ("a trust list", lambda f: f.update(trusted_types=["posix.system"]), "trusted_types"),
        ("another code file", lambda f: f.update(model_code_path="evil.py"), "model_code_path"),
        ("a pipeline outside", lambda f: f["artifacts"]["pipeline"].update(path="../../x.skops"), "pipeline"),
        ("a second artifact", lambda f: f["artifacts"].update(extra={"path": "MLmodel"}), "one artifact"),
    ],
)
def test_an_edited_mlmodel_is_refused(
    logged: tuple[Registry, Path], case: str, change: Callable[[dict], None], message: str
) -> None:
    registry, stored = logged
    edit_mlmodel(stored, change)
    with pytest.raises(RegistryError, match=message):
        load(registry)


def test_a_second_flavour_is_refused(logged: tuple[Registry, Path]) -> None:
    registry, stored = logged
    path = stored / "MLmodel"
    meta = yaml.safe_load(path.read_text())
    meta["flavors"]["sklearn"] = {"pickled_model": "model.pkl"}
    path.write_text(yaml.safe_dump(meta))
    with pytest.raises(RegistryError, match="exactly the python_function flavour"):
        load(registry)


def test_a_skops_file_with_a_refused_type_does_not_load(
    logged: tuple[Registry, Path], tmp_path: Path
) -> None:
    """A pipeline calling ``os.system`` through a FunctionTransformer: skops refuses ``posix.system``."""
    registry, stored = logged
    marker = tmp_path / "system-ran"
    evil = Pipeline([("run", FunctionTransformer(os.system, kw_args={}))])
    evil.steps[0][1].fit([[0]])
    skops.io.dump(evil, stored / "artifacts" / "pipeline.skops")
    assert "posix.system" in skops.io.get_untrusted_types(file=stored / "artifacts" / "pipeline.skops")
    with pytest.raises(RegistryError, match=r"posix\.system"):
        load(registry)
    assert not marker.exists()


def test_check_model_folder_names_a_missing_mlmodel(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="no MLmodel"):
        check_model_folder(tmp_path)


def test_a_crafted_boosting_tree_does_not_load(logged: tuple[Registry, Path]) -> None:
    """skops leaves ``TreePredictor`` untrusted; the project trusts it only with its node check."""
    registry, stored = logged
    pipeline = fitted_with_trees("hist_gradient_boosting")
    tree_nodes(pipeline)["left"][0] = 1_000_000_000
    skops.io.dump(pipeline, stored / "artifacts" / "pipeline.skops")
    with pytest.raises(RegistryError, match="outside nodes"):
        load(registry)


def test_a_model_logged_under_other_versions_loads_with_a_warning_naming_them(
    logged: tuple[Registry, Path], caplog: pytest.LogCaptureFixture
) -> None:
    registry, stored = logged
    requirements = stored / "requirements.txt"
    assert requirement_mismatches(stored) == []  # as logged: this environment's versions
    pinned = [line for line in requirements.read_text().splitlines() if line.startswith("scikit-learn==")]
    assert pinned, "the logged requirements pin scikit-learn"
    requirements.write_text(
        requirements.read_text().replace(pinned[0], "scikit-learn==0.20.0")
        + "\nno-such-package-galaxy==1.0\n--index-url https://example.invalid/simple\n"
    )
    with caplog.at_level(logging.WARNING, logger="galaxy_morphology.io.model_files"):
        loaded = registry.load(registry.resolve(f"models:/{NAME}/1"))
    assert len(loaded.score(raw_frame(2, 2, 0))) == 4
    warning = " ".join(record.getMessage() for record in caplog.records)
    installed = pinned[0].removeprefix("scikit-learn==")
    assert f"scikit-learn==0.20.0 (installed: {installed})" in warning
    assert "no-such-package-galaxy==1.0 (not installed)" in warning
    assert "index-url" not in warning
