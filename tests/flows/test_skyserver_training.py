"""The model's input follows the table it was trained on, both ways.

A model trained on SkyServer rows (through the stand-in) takes the five profile columns: its
signature names them, and serving (the pyfunc) and classify refuse rows without them, naming the
column. A model trained on the snapshot does not ask for them.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.core.schema import FEATURE_COLUMNS, PROFILE_COLUMNS
from galaxy_morphology.core.stages import VIEW_REASONS
from galaxy_morphology.flows.classify import classify_flow
from galaxy_morphology.flows.training import training_flow
from galaxy_morphology.io.tracking import Tracking
from tests.factories import catalogue, with_profiles, write_snapshot
from tests.serving.champion import MODEL_NAME, TrainedStore, tracking_env, train_champion
from tests.skyserver_tables import build_tables
from tests.standin_skyserver import running

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROWS = 1500


@pytest.fixture(scope="module")
def skyserver_store(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """Quick logistic training on 1,500 zooSpec rows from the stand-in."""
    folder = tmp_path_factory.mktemp("skyserver-champion")
    tracking_uri, artifact_root = f"sqlite:///{folder / 'mlflow.db'}", folder / "mlartifacts"
    with running(build_tables(ROWS, seed=2)) as server, tracking_env(tracking_uri, artifact_root):
        settings = folder / "settings.yaml"
        settings.write_text(
            f"data:\n  cache_dir: {folder / 'cache'}\n"
            f"skyserver:\n  base_url: {server.base_url}\n  page_size: 1000\n"
        )
        summary = training_flow(
            source="skyserver", quick=True, families=["logistic"], settings_file=str(settings)
        )
    return TrainedStore(folder, tracking_uri, artifact_root, summary.version)


@pytest.fixture(scope="module")
def snapshot_store(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return train_champion(tmp_path_factory.mktemp("snapshot-champion"))


def load(store: TrainedStore) -> mlflow.pyfunc.PyFuncModel:
    with tracking_env(store.tracking_uri, store.artifact_root):
        mlflow.set_registry_uri(store.tracking_uri)  # tracking_env restores it
        return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{store.version}")


def use(store: TrainedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.tracking_uri)


def rows(n: int = 12) -> pd.DataFrame:
    return with_profiles(catalogue(n))


def test_signature_follows_the_training_table(
    skyserver_store: TrainedStore, snapshot_store: TrainedStore
) -> None:
    skyserver_model, snapshot_model = load(skyserver_store), load(snapshot_store)
    assert skyserver_model.metadata.get_input_schema().input_names() == [*FEATURE_COLUMNS, *PROFILE_COLUMNS]
    assert snapshot_model.metadata.get_input_schema().input_names() == list(FEATURE_COLUMNS)
    # the training run records SkyServer's stages as data.* params next to the cleaning counts
    tracking = Tracking(skyserver_store.tracking_uri, skyserver_store.artifact_root)
    version = tracking.client.get_model_version(MODEL_NAME, skyserver_store.version)
    params = tracking.client.get_run(version.run_id).data.params
    assert params["data.zoospec_rows"] == str(ROWS)
    assert int(params["data.distinct_objids"]) < ROWS
    assert (
        int(params["data.raw"])
        == int(params["data.specobj_rows"])
        == ROWS - sum(int(params[f"data.dropped_{reason}"]) for reason in VIEW_REASONS)
    )


def test_a_profile_model_refuses_rows_without_profile_columns(skyserver_store: TrainedStore) -> None:
    model = load(skyserver_store)
    predicted = model.predict(rows())
    assert len(predicted) == 12 and set(predicted["label"]) <= {"spiral", "elliptical"}
    with pytest.raises(MlflowException, match=r"missing inputs.*'fracDeV_r'"):
        model.predict(rows().drop(columns=["fracDeV_r"]))
    with pytest.raises(MlflowException, match=r"fracDeV_r: value 1\.5 outside physical range"):
        model.predict(rows().assign(fracDeV_r=1.5))


def test_a_snapshot_model_does_not_ask_for_profile_columns(snapshot_store: TrainedStore) -> None:
    model = load(snapshot_store)
    only_catalogue = catalogue(12)[list(FEATURE_COLUMNS)]
    pd.testing.assert_frame_equal(model.predict(only_catalogue), model.predict(rows()))


def test_classify_asks_for_the_models_columns(
    skyserver_store: TrainedStore,
    snapshot_store: TrainedStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without = write_snapshot(catalogue(20), tmp_path / "catalogue.csv")
    with_them = write_snapshot(rows(20), tmp_path / "skyserver.csv")
    use(skyserver_store, monkeypatch)
    with pytest.raises(SchemaError, match=r"missing required column\(s\): 'fracDeV_r', 'petroR50_r'"):
        classify_flow(str(without), str(tmp_path / "refused.parquet"))
    assert not (tmp_path / "refused.parquet").exists()
    assert classify_flow(str(with_them), str(tmp_path / "profile.parquet")).scored == 20
    use(snapshot_store, monkeypatch)
    assert classify_flow(str(without), str(tmp_path / "snapshot.parquet")).scored == 20
