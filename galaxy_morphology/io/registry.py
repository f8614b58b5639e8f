"""Which model: the in-service alias, ``models:/`` URIs, version lookup, registration, load-and-score.

Serve, classify, monitoring, the review and the champion gate all ask this module which
model they mean. The in-service alias is ``mlflow.model_alias`` (default ``champion``):
set it to ``staging`` and every command serves, scores, monitors, reviews and gates that
alias instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import mlflow
import pandas as pd
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from mlflow.types import Schema

from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.schema import FEATURE_COLUMNS, SchemaError
from galaxy_morphology.core.settings import Settings
from galaxy_morphology.io.model_files import (
    ModelFolderError,
    UntrustedModelError,
    download_model,
    load_model_folder,
    model_signature,
)
from galaxy_morphology.io.tracking import Tracking

MODEL_DESCRIPTION = (
    "Elliptical vs spiral from SDSS catalogue columns, trained on Galaxy Zoo 1 flags. "
    "Input: raw catalogue columns; output: label and p_elliptical per row."
)
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")
REGISTRATION_TAG = "galaxy.registration"
INCOMPLETE = "incomplete"
COMPLETE = "complete"


class RegistryError(UserError, RuntimeError):
    """The registry cannot give or take the model asked for; nothing was left half-done."""


@dataclass(frozen=True)
class ModelRef:
    """A model URI, parsed: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, or any other."""

    uri: str
    name: str | None = None
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        if not uri.startswith("models:/"):
            return cls(uri)
        target = uri.removeprefix("models:/").strip("/")
        if "@" in target:
            name, alias = target.split("@", 1)
            if name and alias:
                return cls(uri, name=name, alias=alias)
        else:
            name, _, version = target.partition("/")
            if name and version:
                return cls(uri, name=name, version=version)
        raise RegistryError(f"model URI {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")


@dataclass(frozen=True)
class ResolvedModel:
    """One concrete model: a registered version (``name``/``version``) or a plain URI."""

    requested: str
    uri: str  # pinned: models:/<name>/<version> for registered models
    name: str
    version: str | None
    run_id: str | None
    registered_at: datetime | None = None


def alias_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def in_service_uri(settings: Settings) -> str:
    """``models:/<mlflow.model_name>@<mlflow.model_alias>``: what every command uses by default."""
    return alias_uri(settings.mlflow.model_name, settings.mlflow.model_alias)


class Scorer(Protocol):
    def predict(self, data: pd.DataFrame) -> pd.DataFrame: ...


@dataclass(frozen=True)
class DescribedModel:
    """A version and the raw columns it takes, read from its ``MLmodel`` file: nothing is loaded."""

    resolved: ResolvedModel
    input_columns: tuple[str, ...] = FEATURE_COLUMNS


@dataclass(frozen=True)
class LoadedModel:
    model: Scorer
    resolved: ResolvedModel
    # the raw columns the model takes: its signature's inputs, i.e. the columns it was trained on
    input_columns: tuple[str, ...] = FEATURE_COLUMNS

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``label`` and ``p_elliptical`` for every row of ``frame`` (the model's columns only)."""
        missing = [name for name in self.input_columns if name not in frame.columns]
        if missing:
            raise SchemaError(
                f"model {self.resolved.requested} takes column(s) {missing}, which the rows lack "
                "(it was trained on a table that had them)"
            )
        return self.model.predict(frame[list(self.input_columns)].astype("float64"))


def signature_columns(model: Any) -> tuple[str, ...]:
    """The input columns in a loaded pyfunc's signature (``FEATURE_COLUMNS`` without one)."""
    return schema_columns(model.metadata.get_input_schema())


def schema_columns(schema: Schema | None) -> tuple[str, ...]:
    return FEATURE_COLUMNS if schema is None else tuple(str(name) for name in schema.input_names())


class Registry:
    """The registered model ``name`` in the tracking store, with ``alias`` in service."""

    def __init__(self, tracking: Tracking, name: str, alias: str) -> None:
        self.tracking = tracking
        self.client = tracking.client
        self.name = name
        self.alias = alias
        # MLflow's fluent calls (load_model of models:/ URIs, log_model) read the process-wide URIs
        mlflow.set_tracking_uri(tracking.uri)
        mlflow.set_registry_uri(tracking.uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """The project's model (``mlflow.model_name``) with ``mlflow.model_alias`` in service."""
        tracking = Tracking(settings.tracking_uri(), settings.mlflow.artifact_root)
        return cls(tracking, settings.mlflow.model_name, settings.mlflow.model_alias)

    @property
    def in_service_uri(self) -> str:
        return alias_uri(self.name, self.alias)

    def version_for(self, alias: str) -> str | None:
        """The version holding ``alias``, or None."""
        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as error:
            if error.error_code in _MISSING:
                return None
            raise

    def in_service(self) -> ResolvedModel | None:
        """The version in service, or None when the alias is not set yet."""
        return None if self.version_for(self.alias) is None else self.resolve(self.in_service_uri)

    def resolve(self, uri: str | None = None) -> ResolvedModel:
        """``uri`` (default: the in-service alias) pinned to a version; ``RegistryError`` if absent."""
        ref = ModelRef.parse(uri or self.in_service_uri)
        if ref.name is None:
            run_id = ref.uri.removeprefix("runs:/").split("/", 1)[0] if ref.uri.startswith("runs:/") else None
            return ResolvedModel(ref.uri, ref.uri, ref.uri, None, run_id)
        try:
            if ref.alias is not None:
                found = self.client.get_model_version_by_alias(ref.name, ref.alias)
            else:
                found = self.client.get_model_version(ref.name, str(ref.version))
        except MlflowException as error:
            raise RegistryError(
                f"model {ref.uri} not found in the registry at {self.tracking.uri}: {error.message}"
            ) from None
        version = str(found.version)
        return ResolvedModel(
            requested=ref.uri,
            uri=f"models:/{ref.name}/{version}",
            name=ref.name,
            version=version,
            run_id=found.run_id,
            registered_at=datetime.fromtimestamp(found.creation_timestamp / 1000, tz=UTC),
        )

    def load(self, resolved: ResolvedModel) -> LoadedModel:
        """Download the version, check its folder (``io.model_files``), then load it."""
        try:
            with tempfile.TemporaryDirectory(prefix="galaxy-model-") as folder:
                model = load_model_folder(download_model(resolved.uri, Path(folder), self.tracking.uri))
        except MlflowException as error:
            raise RegistryError(
                f"cannot load model {resolved.requested} from {self.tracking.uri}: {error.message}"
            ) from None
        except (ModelFolderError, UntrustedModelError) as error:
            raise RegistryError(f"refused to load model {resolved.requested}: {error}") from None
        return LoadedModel(model, resolved, signature_columns(model))

    def describe(self, resolved: ResolvedModel) -> DescribedModel:
        """The version's input columns from its signature, without downloading or loading the
        pipeline (a classify client whose cluster does the scoring needs no more)."""
        try:
            signature = model_signature(resolved.uri, self.tracking.uri)
        except (MlflowException, OSError) as error:
            message = error.message if isinstance(error, MlflowException) else str(error)
            raise RegistryError(
                f"cannot read model {resolved.requested} from {self.tracking.uri}: {message}"
            ) from None
        return DescribedModel(resolved, schema_columns(None if signature is None else signature.inputs))

    def score(self, resolved: ResolvedModel, frame: pd.DataFrame) -> pd.DataFrame:
        return self.load(resolved).score(frame)

    # ------------------------------------------------------------------ writing

    def register(
        self,
        run_id: str,
        log_model: Callable[[Path], ModelInfo],
        tags: Mapping[str, str],
        alias: str,
    ) -> str:
        """Log the model to ``run_id`` (``log_model`` of a scratch folder, e.g.
        ``io.model_log.log_pyfunc``), register it with all its tags, then give it ``alias``.

        The version is created with every tag at once, marked incomplete until the alias has
        moved (the last step). A failure in between deletes the version again; a killed
        process leaves an incomplete version that the next registration removes
        (``remove_incomplete``), so no half-registered version stays in the registry.
        """
        with tempfile.TemporaryDirectory() as folder:
            mlflow.start_run(run_id=run_id)
            try:
                info = log_model(Path(folder))
            finally:
                # leave the run open: the training flow ends it with its true final state
                mlflow.end_run(status=RunStatus.to_string(RunStatus.RUNNING))
        version = mlflow.register_model(
            info.model_uri, self.name, tags={**tags, REGISTRATION_TAG: INCOMPLETE}
        )
        try:
            self.client.update_registered_model(self.name, description=MODEL_DESCRIPTION)
            self.client.set_registered_model_alias(self.name, alias, version.version)
            self.client.set_model_version_tag(self.name, version.version, REGISTRATION_TAG, COMPLETE)
        except BaseException:
            self.client.delete_model_version(self.name, version.version)
            raise
        return str(version.version)

    def remove_incomplete(self) -> list[str]:
        """Versions a killed registration left behind: deleted, or completed if their alias moved.

        Call it only while holding the registry lock (no registration is in progress then).
        """
        removed = []
        found = self.client.search_model_versions(f"name = '{self.name}'")
        for version in found:
            if version.tags.get(REGISTRATION_TAG) != INCOMPLETE:
                continue
            if version.aliases:  # the alias moved: only the final tag is missing
                self.client.set_model_version_tag(self.name, version.version, REGISTRATION_TAG, COMPLETE)
            else:
                self.client.delete_model_version(self.name, version.version)
                removed.append(str(version.version))
        return removed

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def model_tag(self, key: str) -> str | None:
        return self.client.get_registered_model(self.name).tags.get(key)

    def set_model_tag(self, key: str, value: str) -> None:
        self.client.set_registered_model_tag(self.name, key, value)
