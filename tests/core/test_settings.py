"""Settings: YAML file < environment < explicit overrides; unknown keys and bad values refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from galaxy_morphology.core.settings import SETTINGS_FILE_ENV, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GALAXY_* variable of the caller's shell leaks into these tests."""
    import os

    for key in list(os.environ):
        if key.startswith("GALAXY_"):
            monkeypatch.delenv(key)


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def test_yaml_values_are_loaded(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        "split:\n  seed: 5\n  train: 0.7\n  validation: 0.2\n  test: 0.1\n"
        "skyserver:\n  page_size: 1000\n  base_url: http://127.0.0.1:1\n"
        "data:\n  cache_dir: /tmp/somewhere\n",
    )
    settings = load_settings(path=path)
    assert settings.split.seed == 5
    assert (settings.split.train, settings.split.validation) == (0.7, 0.2)
    assert settings.skyserver.page_size == 1000
    assert settings.skyserver.base_url == "http://127.0.0.1:1"
    assert settings.data.cache_dir == Path("/tmp/somewhere")
    # keys the file does not name keep their defaults
    assert settings.skyserver.release == 17
    assert settings.labels.rule == "gz1_flags"


def test_settings_file_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "training:\n  n_iter: 11\n")
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(path))
    assert load_settings().training.n_iter == 11


def test_repository_settings_file_is_valid() -> None:
    repository_file = Path(__file__).resolve().parents[2] / "settings.yaml"
    settings = load_settings(path=repository_file)
    assert settings.data.source == "snapshot"
    assert settings.split.train + settings.split.validation + settings.split.test == pytest.approx(1.0)


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "split:\n  seed: 5\n")
    monkeypatch.setenv("GALAXY_SPLIT__SEED", "7")
    settings = load_settings(path=path)
    assert settings.split.seed == 7
    assert settings.split.train == 0.8  # the rest of the section is untouched


def test_overrides_win_over_environment_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "split:\n  seed: 5\ntraining:\n  n_iter: 4\n")
    monkeypatch.setenv("GALAXY_SPLIT__SEED", "7")
    monkeypatch.setenv("GALAXY_TRAINING__N_ITER", "8")
    settings = load_settings({"split": {"seed": 9}, "training": {"n_iter": None}}, path=path)
    assert settings.split.seed == 9
    # an option left at None overrides nothing: the environment still wins over the file
    assert settings.training.n_iter == 8


def test_override_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALAXY_SPLIT__SEED", "7")
    with pytest.raises(SettingsError, match=r"split\.seed"):
        load_settings({"split": {"seed": "not-a-number"}}, path=write_yaml(tmp_path, "{}\n"))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("split:\n  seeds: 3\n", "split.seeds"),
        ("splits:\n  seed: 3\n", "splits"),
        ("monitoring:\n  ranges:\n    f1_macro: {minimum: 0.9}\n", "monitoring.ranges.f1_macro.minimum"),
    ],
)
def test_unknown_key_in_yaml_is_refused(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(path=write_yaml(tmp_path, text))
    assert f"{key}: Extra inputs are not permitted" in str(error.value)


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("GALAXY_SPLIT__SEEDS", "split.seeds"),
        ("GALAXY_SPLITS__SEED", "GALAXY_SPLITS__SEED"),
    ],
)
def test_unknown_key_in_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, key: str
) -> None:
    monkeypatch.setenv(variable, "3")
    with pytest.raises(SettingsError) as error:
        load_settings(path=write_yaml(tmp_path, "{}\n"))
    assert key in str(error.value)
    assert "environment" in str(error.value)


def test_unrelated_galaxy_variable_is_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the monitoring webhook variable shares the prefix but is not a settings key
    monkeypatch.setenv("GALAXY_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    assert load_settings(path=write_yaml(tmp_path, "{}\n")).monitoring.webhook_url_env


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"split": {"seeds": 3}}, "split.seeds"),
        ({"nonsense": {"a": 1}}, "nonsense"),
    ],
)
def test_unknown_key_in_overrides_is_refused(tmp_path: Path, overrides: dict, key: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(overrides, path=write_yaml(tmp_path, "{}\n"))
    assert f"{key}: Extra inputs are not permitted" in str(error.value)
    assert "command-line options" in str(error.value)


def test_options_left_unset_are_not_named_as_a_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI passes every option, most of them None: only given ones count as a source."""
    monkeypatch.setenv("GALAXY_SPLIT__SEED", "abc")
    with pytest.raises(SettingsError) as error:
        load_settings({"data": {"source": None}}, path=write_yaml(tmp_path, "{}\n"))
    assert "environment GALAXY_SPLIT__SEED)" in str(error.value)
    assert "command-line options" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("split:\n  seed: abc\n", "split.seed"),
        ("skyserver:\n  page_size: 0\n", "skyserver.page_size"),
        ("data:\n  source: ftp\n", "data.source"),
        ("training:\n  families: [knn, perceptron]\n", "training.families.1"),
    ],
)
def test_wrong_type_or_value_is_refused(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(path=write_yaml(tmp_path, text))
    assert f"  {key}: " in str(error.value)


def test_wrong_type_in_environment_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALAXY_SKYSERVER__RETRIES", "many")
    with pytest.raises(SettingsError) as error:
        load_settings(path=write_yaml(tmp_path, "{}\n"))
    assert "skyserver.retries" in str(error.value)
    assert "GALAXY_SKYSERVER__RETRIES" in str(error.value)


def test_split_fractions_must_sum_to_one(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "split:\n  train: 0.7\n  validation: 0.1\n  test: 0.1\n")
    with pytest.raises(SettingsError, match=r"split: .*must be 1, got 0\.9"):
        load_settings(path=path)


def test_split_fractions_checked_after_overrides(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "{}\n")
    with pytest.raises(SettingsError, match="must be 1"):
        load_settings({"split": {"train": 0.5}}, path=path)
    settings = load_settings({"split": {"train": 0.6, "validation": 0.2, "test": 0.2}}, path=path)
    assert settings.split.test == 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("split: [unclosed\n", "is not valid YAML"),
        ("split:\n  seed: 1\n bad-indent: 2\n", "is not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_invalid_yaml_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = write_yaml(tmp_path, text)
    with pytest.raises(SettingsError, match=message) as error:
        load_settings(path=path)
    assert str(path) in str(error.value)


def test_named_settings_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(path=missing)
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(missing))
    with pytest.raises(SettingsError, match=r"nope\.yaml"):
        load_settings()


def test_default_settings_file_may_be_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no settings.yaml here: every default applies
    settings = load_settings()
    assert settings.split.seed == 42
    assert settings.skyserver.base_url is None


@pytest.mark.parametrize(
    ("name", "hint"), [("f1_marco", "did you mean 'f1_macro'"), ("recal_elliptical", "'recall_elliptical'")]
)
def test_a_misspelt_range_name_is_refused(tmp_path: Path, name: str, hint: str) -> None:
    path = write_yaml(tmp_path, f"monitoring:\n  ranges:\n    {name}: {{min: 0.9}}\n")
    with pytest.raises(SettingsError, match=rf"monitoring\.ranges: .*'{name}' is not a metric .*{hint}"):
        load_settings(path=path)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("serving:\n  port: true\n", "serving.port", "expected a number, got a boolean"),
        ("training:\n  n_jobs: 0\n", "training.n_jobs", "0 workers cannot run anything"),
        ("serving:\n  threads: 100000\n", "serving.threads", "less than or equal to 256"),
        ("serving:\n  workers: 1000\n", "serving.workers", "less than or equal to 64"),
        ("classify:\n  chunk_rows: 1.0e+15\n", "classify.chunk_rows", "less than or equal to 10000000"),
        (
            "serving:\n  host: '127.0.0.1; rm -rf /'\n",
            "serving.host",
            "expected a host name or an IP address",
        ),
        ("mlflow:\n  tracking_uri: sqlit:///mlflow.db\n", "mlflow.tracking_uri", "not a tracking URI MLflow"),
        ("mlflow:\n  tracking_uri: http://\n", "mlflow.tracking_uri", "not a tracking URI MLflow"),
        ("training:\n  families: []\n", "training.families", "at least 1 item"),
    ],
)
def test_values_that_would_be_taken_silently_are_refused(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=rf"(?s){re.escape(key)}: .*{re.escape(message)}"):
        load_settings(path=write_yaml(tmp_path, text))


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0.0.0.0", "::1", "[::1]", "localhost", "mlflow-server.internal"]
)
def test_host_names_and_addresses_are_accepted(tmp_path: Path, host: str) -> None:
    assert load_settings(path=write_yaml(tmp_path, f"serving:\n  host: '{host}'\n")).serving.host == host


@pytest.mark.parametrize(
    "uri",
    ["sqlite:///mlflow.db", "http://127.0.0.1:5000", "postgresql+psycopg://u:p@db:5432/mlflow", "file:///x"],
)
def test_tracking_uris_mlflow_can_use_are_accepted(tmp_path: Path, uri: str) -> None:
    assert (
        load_settings(path=write_yaml(tmp_path, f"mlflow:\n  tracking_uri: '{uri}'\n")).mlflow.tracking_uri
        == uri
    )


def test_a_variable_with_one_underscore_too_few_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALAXY_SERVING_PORT", "6001")
    with pytest.raises(
        SettingsError, match=r"GALAXY_SERVING_PORT: not a settings variable .*GALAXY_SERVING__PORT"
    ):
        load_settings(path=write_yaml(tmp_path, "{}\n"))


def test_a_bogus_mlflow_tracking_uri_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mysterious-store")
    with pytest.raises(SettingsError, match=r"MLFLOW_TRACKING_URI: 'mysterious-store' is not a tracking URI"):
        load_settings(path=write_yaml(tmp_path, "{}\n"))


@pytest.mark.parametrize(
    ("value", "families"),
    [("knn", ["knn"]), ("knn, logistic", ["knn", "logistic"]), ('["knn","logistic"]', ["knn", "logistic"])],
)
def test_families_from_the_environment_as_a_name_or_a_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, families: list[str]
) -> None:
    monkeypatch.setenv("GALAXY_TRAINING__FAMILIES", value)
    assert load_settings(path=write_yaml(tmp_path, "{}\n")).training.families == families


def test_an_unknown_family_from_the_environment_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALAXY_TRAINING__FAMILIES", "knn,xgboost")
    with pytest.raises(SettingsError, match=r"training\.families\.1: Input should be 'knn'"):
        load_settings(path=write_yaml(tmp_path, "{}\n"))


@pytest.mark.parametrize("name", ["GALAXY_DATA_DIR", "GALAXY_HOME", "GALAXY_IMAGE_TAG", "GALAXY_BIND_ADDR"])
def test_project_variables_that_are_not_settings_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "anything")
    assert load_settings(path=write_yaml(tmp_path, "{}\n")).serving.port == 5001


def test_pass_through_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("")
    assert load_settings(path=path).classify.pass_through == ["objid", "specobjid?", "ra", "dec"]
    monkeypatch.setenv("GALAXY_CLASSIFY__PASS_THROUGH", "objid, plate ,fiberid?")
    assert load_settings(path=path).classify.pass_through == ["objid", "plate", "fiberid?"]
    monkeypatch.delenv("GALAXY_CLASSIFY__PASS_THROUGH")
    for names, message in [
        (["ra", "ra?"], "column(s) named twice: ra"),
        (["label"], "'label' is a column the outputs already have"),
        (["input_row?"], "'input_row?' is a column the outputs already have"),
        (["ra; rm"], "'ra; rm' is not a column name"),
    ]:
        with pytest.raises(SettingsError, match=re.escape(message)):
            load_settings({"classify": {"pass_through": names}}, path=path)
