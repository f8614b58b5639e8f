"""One validated settings object for the whole project.

Values come, lowest precedence first, from the YAML file (``settings.yaml`` at the
repository root, or the file named by ``GALAXY_SETTINGS_FILE``), then environment
variables (``GALAXY_<SECTION>__<KEY>``, e.g. ``GALAXY_SPLIT__SEED=7``), then explicit
overrides passed by the command line. pydantic-settings reads and deep-merges the three
sources; unknown keys and wrong types are refused with a message naming the key.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlparse

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.metric_names import monitored_names

SETTINGS_FILE_ENV = "GALAXY_SETTINGS_FILE"
DEFAULT_SETTINGS_FILE = Path("settings.yaml")


class SettingsError(UserError, ValueError):
    """Settings could not be loaded; the message names every offending key."""


def _not_a_boolean(value: Any) -> Any:
    """YAML's ``true`` would otherwise become the number 1 (``port: true`` as port 1)."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "not_a_number", "expected a number, got a boolean ({value})", {"value": value}
        )
    return value


Int = Annotated[int, BeforeValidator(_not_a_boolean)]
Float = Annotated[float, BeforeValidator(_not_a_boolean)]
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?$|^[0-9A-Fa-f:.]+$|^\[[0-9A-Fa-f:.]+\]$")
TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str) -> str:
    """A URI MLflow can track into, or ``ValueError`` saying what forms are accepted."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+", 1)[0]
    usable = scheme in TRACKING_SCHEMES and (
        (scheme == "sqlite" and uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"))
        or (scheme == "file" and bool(parsed.path))
        or (scheme == "databricks")
        or (scheme not in ("sqlite", "file", "databricks") and bool(parsed.hostname))
    )
    if not usable:
        raise ValueError(
            f"{uri!r} is not a tracking URI MLflow can use (sqlite:///path.db, http(s)://host:port, "
            "postgresql://user:password@host:port/db, file:///folder)"
        )
    return uri


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSettings(_Section):
    source: Literal["snapshot", "skyserver"] = "snapshot"
    snapshot_path: Path = Path("../shared/data/gz1_sdss_dr9_curtin_3976.csv.gz")
    cache_dir: Path = Path("data/cache")
    export_dir: Path | None = Field(
        None, description="write the labelled and unlabelled rows and each split here as CSV (None: don't)"
    )


class SkyServerSettings(_Section):
    release: Int = Field(17, ge=1, le=20, description="SDSS data release (DR number)")
    page_size: Int = Field(50_000, ge=1, le=500_000)
    max_rows: Int | None = Field(None, ge=1, description="stop after this many rows")
    retries: Int = Field(4, ge=0, le=20, description="retries of a page after a transient failure")
    backoff_seconds: Float = Field(2.0, ge=0, description="first retry delay; doubles each retry")
    timeout_seconds: Float = Field(
        660.0,
        ge=600,
        description="client wait for an answer; SkyServer itself stops a query after 600 s, and a "
        "shorter wait would cut a query still running and send it again",
    )
    min_interval_seconds: Float = Field(
        1.5, ge=1.0, description="spacing of query starts; SkyServer allows 60 queries a minute"
    )
    base_url: str | None = Field(None, description="SkyServer base URL; None keeps astroquery's")


class SplitSettings(_Section):
    train: Float = Field(0.8, gt=0, lt=1)
    validation: Float = Field(0.1, gt=0, lt=1)
    test: Float = Field(0.1, gt=0, lt=1)
    seed: Int = 42

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitSettings:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"split.train + split.validation + split.test must be 1, got {total:g}")
        return self


class LabelSettings(_Section):
    rule: Literal["gz1_flags", "debiased_fraction"] = "gz1_flags"
    threshold: Float = Field(0.8, gt=0.5, le=1.0, description="for rule debiased_fraction")


Family = Literal["knn", "decision_tree", "random_forest", "hist_gradient_boosting", "logistic"]
FAMILY_NAMES: tuple[Family, ...] = get_args(Family)


def comma_separated(value: Any) -> Any:
    """A list setting from the environment: a JSON list, or comma-separated names."""
    if isinstance(value, str):
        text = value.strip()
        return json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",")]
    return value


class TrainingSettings(_Section):
    @field_validator("families", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("n_jobs")
    @classmethod
    def _joblib_workers(cls, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("0 workers cannot run anything: use -1 (every core) or a positive number")
        return n_jobs

    # NoDecode: GALAXY_TRAINING__FAMILIES=knn,logistic is a list, not JSON to parse
    families: Annotated[list[Family], NoDecode] = Field(
        default_factory=lambda: list(FAMILY_NAMES), min_length=1
    )
    ensemble: bool = Field(True, description="also try a soft vote of the tuned families")
    search: Literal["random", "halving"] = "random"
    n_iter: Int = Field(30, ge=1)
    cv_folds: Int = Field(10, ge=2)
    n_jobs: Int = Field(-1, ge=-64, le=512, description="joblib workers: -1 every core, n > 0 that many")
    halving_factor: Int = Field(3, ge=2)
    quick_n_iter: Int = Field(3, ge=1)
    quick_cv_folds: Int = Field(3, ge=2)
    gate_margin: Float = Field(0.0, ge=0, le=1, description="macro F1 a challenger must gain")
    permutation_repeats: Int = Field(5, ge=1)
    dask_address: str | None = Field(None, description="Dask scheduler for the searches and batch scoring")
    max_predict_ms: Float | None = Field(
        None,
        gt=0,
        description="only a family whose pipeline predicts one record within this many ms "
        "(median, in-process) can win; None: no latency budget",
    )
    # 0 since the nested CV of 2026-12-02 (BENCHMARKS.md): the one-SE rule was not better
    select_by_cv_below: Int = Field(
        0,
        ge=0,
        description="a validation split with fewer rows picks the winner by repeated stratified CV "
        "over train+validation and the one-standard-error rule; 0: always on validation",
    )
    select_cv_folds: Int = Field(5, ge=2, le=50)
    select_cv_repeats: Int = Field(3, ge=1, le=50)
    calibration: bool = Field(
        True, description="calibrate the winner (sigmoid or isotonic) when it lowers the Brier score"
    )
    calibration_folds: Int = Field(5, ge=2, le=50)
    bootstrap_draws: Int = Field(2000, ge=100, le=100_000, description="draws of every 95% interval")
    progress_seconds: Float = Field(
        10.0, ge=0.5, le=3600, description="a search's fits done, elapsed and time left: how often"
    )


class MlflowSettings(_Section):
    tracking_uri: Annotated[str, AfterValidator(check_tracking_uri)] = "sqlite:///mlflow.db"
    artifact_root: Path = Path("mlartifacts")
    experiment: str = "galaxy-morphology"
    monitoring_experiment: str = "galaxy-morphology-monitoring"
    review_experiment: str = "galaxy-morphology-review"
    ui_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="the MLflow UI's address, for links in Prefect artifacts (e.g. http://127.0.0.1:5000 "
        "where `mlflow ui` runs); None: the tracking URI when it is http(s), else no links",
    )
    model_name: str = "galaxy-morphology"
    model_alias: str = Field(
        "champion",
        min_length=1,
        description="the alias in service: served, classified with, monitored, reviewed and gated",
    )


class ServingSettings(_Section):
    host: str = "127.0.0.1"
    port: Int = Field(5001, ge=1, le=65535)
    workers: Int = Field(1, ge=1, le=64)
    # OpenMP and BLAS threads per worker: one record gains nothing from more, and with
    # several workers or concurrent requests more threads only fight over the cores
    threads: Int = Field(1, ge=1, le=256)
    # what one /invocations request may hold; beyond it the answer is a 4xx, never a 500
    max_request_bytes: Int = Field(
        8 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="largest /invocations body (413 above it); about 16,000 JSON records of raw rows",
    )
    max_records: Int = Field(10_000, ge=1, le=10_000_000, description="most rows one request may score (413)")
    body_timeout_seconds: Float = Field(
        10.0, gt=0, le=3600, description="time a client has to send the whole body (408 after it)"
    )

    @field_validator("host")
    @classmethod
    def _host_name_or_address(cls, host: str) -> str:
        if not HOST.match(host):
            raise ValueError(f"expected a host name or an IP address, got {host!r}")
        return host


PASS_THROUGH_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\??$")
RESERVED_OUTPUT_NAMES = (
    "input_row",
    "label",
    "p_elliptical",
    "model_name",
    "model_version",
    "reason",
    "detail",
)


class ClassifySettings(_Section):
    @field_validator("pass_through", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("pass_through")
    @classmethod
    def _column_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not PASS_THROUGH_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a column name (letters, digits, _; a final ? marks it optional)"
                )
            if name.removesuffix("?") in RESERVED_OUTPUT_NAMES:
                raise ValueError(f"{name!r} is a column the outputs already have")
        bare = [name.removesuffix("?") for name in names]
        repeated = sorted({name for name in bare if bare.count(name) > 1})
        if repeated:
            raise ValueError(f"column(s) named twice: {', '.join(repeated)}")
        return names

    chunk_rows: Int = Field(100_000, ge=1, le=10_000_000, description="rows per chunk (memory grows with it)")
    output_dir: Path = Path("outputs")
    # NoDecode: GALAXY_CLASSIFY__PASS_THROUGH=objid,ra,dec is a list, not JSON to parse
    pass_through: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["objid", "specobjid?", "ra", "dec"],
        description="input columns copied to the outputs beside input_row; a name ending in ? "
        "is copied when the input has it, any other must be in the input",
    )


class MetricRange(_Section):
    min: Float | None = None
    max: Float | None = None

    @model_validator(mode="after")
    def _has_a_bound(self) -> MetricRange:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def contains(self, value: float) -> bool:
        lower_ok = self.min is None or value >= self.min
        upper_ok = self.max is None or value <= self.max
        return lower_ok and upper_ok

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"[{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f">= {self.min:g}"
        return f"<= {self.max:g}"


class MonitoringSettings(_Section):
    ranges: dict[str, MetricRange] = Field(
        default_factory=lambda: {
            "f1_macro": MetricRange(min=0.90),
            "recall_elliptical": MetricRange(min=0.85),
            "roc_auc": MetricRange(min=0.95),
            "drift_share": MetricRange(max=0.5),
            "agreement_spearman": MetricRange(min=0.5),
        }
    )
    min_rows: Int = Field(50, ge=1)
    min_per_class: Int = Field(10, ge=1)
    notification_block: str | None = Field(
        "galaxy-monitoring-alerts", description="name of a Prefect notification block"
    )
    webhook_url_env: str = Field(
        "GALAXY_ALERT_WEBHOOK_URL",
        description="environment variable holding a webhook URL, used when the block is absent",
    )
    reports_dir: Path = Path("reports")

    @field_validator("ranges")
    @classmethod
    def _ranges_name_computed_metrics(cls, ranges: dict[str, MetricRange]) -> dict[str, MetricRange]:
        """A misspelt name would be a check that never runs: refuse it, naming the closest."""
        known = monitored_names()
        for name in ranges:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"'{name}' is not a metric the monitoring computes{hint}")
        return ranges


class ReviewSettings(_Section):
    max_age_days: Int = Field(365, ge=1)
    decision_timeout_seconds: Int = Field(7 * 24 * 3600, ge=1)


class Settings(BaseSettings):
    """Every tunable value of the project."""

    model_config = SettingsConfigDict(
        env_prefix="GALAXY_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data: DataSettings = Field(default_factory=DataSettings)
    skyserver: SkyServerSettings = Field(default_factory=SkyServerSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    classify: ClassifySettings = Field(default_factory=ClassifySettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # highest precedence first: command-line overrides, environment, YAML file
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, _yaml_file.get()))

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` wins over the settings."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow.tracking_uri


# the YAML file of the load in progress (pydantic-settings builds its sources per instance)
_yaml_file: ContextVar[Path] = ContextVar("galaxy_settings_yaml", default=DEFAULT_SETTINGS_FILE)


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = [f"invalid settings ({origin}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def settings_file() -> Path:
    return Path(os.environ.get(SETTINGS_FILE_ENV, DEFAULT_SETTINGS_FILE))


def _check_yaml(path: Path) -> None:
    """A readable mapping of sections, or ``SettingsError`` (pydantic-settings would say less)."""
    if not path.exists():
        return
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from exc
    if content is not None and not isinstance(content, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of sections")


def load_settings(overrides: dict[str, Any] | None = None, path: Path | None = None) -> Settings:
    """Load settings: YAML file, then environment, then ``overrides`` (nested dict)."""
    source = path or settings_file()
    if not source.exists() and (path is not None or SETTINGS_FILE_ENV in os.environ):
        raise SettingsError(f"settings file not found: {source}")
    _check_yaml(source)
    problems = _environment_problems()
    if problems:
        raise SettingsError("invalid settings (environment):\n" + "\n".join(problems))
    environment_keys = sorted(
        key for key in os.environ if key.startswith("GALAXY_") and key != SETTINGS_FILE_ENV
    )
    given = _prune(overrides or {})  # options left unset are not given
    origin = f"file {source}"
    if environment_keys:
        origin += f", environment {', '.join(environment_keys)}"
    if given:
        origin += ", command-line options"
    token = _yaml_file.set(source)
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_format_errors(exc, origin)) from None
    except SourceError as exc:
        raise SettingsError(f"invalid settings ({origin}): {exc}") from None
    finally:
        _yaml_file.reset(token)


def _environment_problems() -> list[str]:
    """Variables the settings would silently ignore, and an unusable ``MLFLOW_TRACKING_URI``.

    ``GALAXY_<SECTION>__<KEY>`` naming no section, and ``GALAXY_SERVING_PORT`` (a settings key
    with one underscore where two are needed), would each leave a value without effect.
    Other ``GALAXY_`` variables (``GALAXY_HOME``, ``GALAXY_DATA_DIR``) are not settings.
    """
    prefix = "GALAXY_"
    sections = {name.lower() for name in Settings.model_fields}
    problems = []
    for key in sorted(os.environ):
        if not key.upper().startswith(prefix) or key == SETTINGS_FILE_ENV:
            continue
        rest = key[len(prefix) :]
        if "__" in rest:
            if rest.split("__")[0].lower() not in sections:
                problems.append(f"  {key}: unknown section (known: {', '.join(Settings.model_fields)})")
            continue
        for section, field in Settings.model_fields.items():
            keys = getattr(field.annotation, "model_fields", {})
            if rest.lower() in {f"{section}_{name}" for name in keys}:
                fixed = f"{prefix}{section.upper()}__{rest[len(section) + 1 :]}"
                problems.append(f"  {key}: not a settings variable (did you mean {fixed}?)")
    tracking = os.environ.get("MLFLOW_TRACKING_URI")
    if tracking:
        try:
            check_tracking_uri(tracking)
        except ValueError as error:
            problems.append(f"  MLFLOW_TRACKING_URI: {error}")
    return problems


def _prune(values: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` leaves: an option the user did not give overrides nothing."""
    pruned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            inner = _prune(value)
            if inner:
                pruned[key] = inner
        elif value is not None:
            pruned[key] = value
    return pruned
