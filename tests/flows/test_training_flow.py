"""The training flow end to end: real Prefect (test harness), real MLflow on a temporary SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.core.schema import FEATURE_COLUMNS
from galaxy_morphology.flows.training import training_flow
from tests.factories import raw_frame, write_snapshot

FAMILIES = ["logistic", "decision_tree", "knn"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """MLflow tracking in a temporary SQLite file, with a temporary artifact folder."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    names = ("MLFLOW_TRACKING_URI", "GALAXY_MLFLOW__ARTIFACT_ROOT", "GALAXY_TRAINING__SELECT_BY_CV_BELOW")
    saved = {key: os.environ.get(key) for key in names}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["GALAXY_MLFLOW__ARTIFACT_ROOT"] = str(folder / "artifacts")
    # the one-SE rule on repeated CV (not the default since 2026-12-02): these flows cover it
    os.environ["GALAXY_TRAINING__SELECT_BY_CV_BELOW"] = "1000"
    yield uri, folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(raw_frame(120, 60, 20, seed=5), tmp_path_factory.mktemp("data") / "gz1.csv")


@pytest.fixture(scope="module")
def first_run(prefect_harness: None, store: tuple[str, Path], snapshot: Path):
    return training_flow(snapshot=str(snapshot), quick=True, families=FAMILIES)


def test_first_run_registers_a_champion_with_runs_metrics_and_artifacts(
    first_run, store: tuple[str, Path]
) -> None:
    uri, _ = store
    client = MlflowClient(uri)
    assert first_run.version == "1"
    assert first_run.alias == "champion"
    assert first_run.winner in [*FAMILIES, "soft_vote"]
    assert 0.0 <= first_run.test_metrics["f1_macro"] <= 1.0

    parent = client.get_run(first_run.run_id)
    assert parent.info.status == "FINISHED"
    for key in (
        "test_f1_macro",
        "test_roc_auc",
        "test_accuracy",
        "test_recall_elliptical",
        "test_f1_weighted",
    ):
        assert key in parent.data.metrics
    assert parent.data.params["dropped.missing_value"] == "0"  # drop counts: parameters, not charts
    assert not any(key.startswith("dropped.") for key in parent.data.metrics)
    digest = parent.data.tags["galaxy.data.digest"]
    assert parent.info.run_name == f"training-cli-quick-{first_run.winner}-{digest[:8]}"
    assert (parent.data.tags["galaxy.trigger"], parent.data.tags["galaxy.budget"]) == ("cli", "quick")
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert parent.data.params["data.train"] == str(first_run_split_size(parent, "train"))
    assert parent.data.tags["galaxy.winner"] == first_run.winner
    assert len(parent.data.tags["mlflow.source.git.commit"]) >= 7
    contexts = {inp.tags[0].value for inp in parent.inputs.dataset_inputs}
    assert contexts == {"training", "test"}

    artifacts = {item.path for item in client.list_artifacts(first_run.run_id, "evaluation")}
    assert artifacts == {
        "evaluation/classification_report.txt",
        "evaluation/confusion_matrix.json",
        "evaluation/confusion_matrix.png",
        "evaluation/feature_importances.csv",
        "evaluation/roc_curve.png",
        "evaluation/reliability_curve.png",
        "evaluation/reliability_curve.csv",
    }
    # every test figure with its 95% bootstrap interval, calibration and agreement logged
    metrics = parent.data.metrics
    for key in ("f1_macro", "roc_auc", "recall_elliptical", "brier"):
        assert metrics[f"test_{key}_ci_low"] <= metrics[f"test_{key}"] <= metrics[f"test_{key}_ci_high"]
    assert 0 <= metrics["test_ece"] <= 1 and parent.data.tags["galaxy.calibration"] in {
        "none",
        "sigmoid",
        "isotonic",
    }
    assert "calibration.brier_none" in metrics
    assert -1 <= metrics["agreement_spearman"] <= 1
    assert first_run.test_intervals["f1_macro"].low <= first_run.test_metrics["f1_macro"]

    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{first_run.run_id}'"
    )
    names = {child.data.tags["mlflow.runName"] for child in children}
    assert names == {*FAMILIES, "soft_vote"}
    for child in children:
        assert "cv_f1_macro_mean" in child.data.metrics
        assert "cv_f1_macro_std" in child.data.metrics
        assert "val_f1_macro" in child.data.metrics
        assert "fit_seconds" in child.data.metrics
        assert 0 < child.data.metrics["predict_ms_one_record"] < 1_000
        # the run spans the family's search, not the logging after it
        duration = (child.info.end_time - child.info.start_time) / 1000
        assert duration == pytest.approx(child.data.metrics["fit_seconds"], abs=0.002)
        assert child.info.start_time >= parent.info.start_time
        contexts = {inp.tags[0].value: inp.dataset.digest for inp in child.inputs.dataset_inputs}
        assert set(contexts) == {"training", "validation"} and all(contexts.values())
        figures = {item.path for item in client.list_artifacts(child.info.run_id, "validation")}
        assert figures == {"validation/confusion_matrix.png", "validation/roc_curve.png"}
        assert child.data.params["family"] == child.info.run_name
        assert "selection_cv_f1_macro_se" in child.data.metrics  # small validation split: chosen by CV
    knn = next(c for c in children if c.data.tags["mlflow.runName"] == "knn")
    assert "space.n_neighbors" in knn.data.params
    assert f"n_neighbors={knn.data.params['tuned.n_neighbors']}" in knn.data.params["best_params"]

    version = client.get_model_version_by_alias("galaxy-morphology", "champion")
    assert str(version.version) == "1"
    assert version.tags["gate.decision"] == "champion"
    assert version.tags["gate.reason"] == "no model holds 'champion' yet"


def first_run_split_size(parent, name: str) -> int:
    return int(parent.data.params[f"data.{name}"])


def test_same_data_again_becomes_challenger_and_champion_stays(first_run, snapshot: Path, store) -> None:
    uri, _ = store
    second = training_flow(snapshot=str(snapshot), quick=True, families=FAMILIES)
    client = MlflowClient(uri)
    assert second.version == "2"
    assert second.alias == "challenger"
    assert str(client.get_model_version_by_alias("galaxy-morphology", "champion").version) == "1"
    tags = client.get_model_version("galaxy-morphology", "2").tags
    assert tags["gate.decision"] == "challenger"
    assert float(tags["gate.champion_f1_macro"]) >= float(tags["gate.new_f1_macro"])


def test_a_failed_run_leaves_champion_and_versions_alone(first_run, store, tmp_path: Path) -> None:
    uri, _ = store
    client = MlflowClient(uri)
    before = {str(v.version) for v in client.search_model_versions("name = 'galaxy-morphology'")}
    broken = write_snapshot(raw_frame(30, 20, 0).drop(columns=["expAB_r"]), tmp_path / "broken.csv")
    with pytest.raises(SchemaError, match="expAB_r"):
        training_flow(snapshot=str(broken), quick=True, families=FAMILIES)
    after = {str(v.version) for v in client.search_model_versions("name = 'galaxy-morphology'")}
    assert after == before
    assert str(client.get_model_version_by_alias("galaxy-morphology", "champion").version) == "1"


def test_champion_loads_in_a_fresh_process_and_predicts_raw_rows(first_run, store, tmp_path: Path) -> None:
    uri, _ = store
    rows = raw_frame(3, 3, 0, seed=11)
    rows_path = tmp_path / "rows.json"
    rows.to_json(rows_path, orient="records")
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        "model = mlflow.pyfunc.load_model('models:/galaxy-morphology@champion')\n"
        f"frame = pd.read_json({str(rows_path)!r}, orient='records')\n"
        "out = model.predict(frame)\n"
        "print(json.dumps(out.to_dict(orient='records')))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(predictions) == 6
    for row in predictions:
        assert row["label"] in ("elliptical", "spiral")
        assert 0.0 <= row["p_elliptical"] <= 1.0
    in_process = mlflow.pyfunc.load_model("models:/galaxy-morphology@champion").predict(
        rows[list(FEATURE_COLUMNS)]
    )
    assert [row["label"] for row in predictions] == in_process["label"].tolist()
