"""Batch classification: the flow, the ``galaxy classify`` command, rejects and atomic output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from galaxy_morphology.cli import app
from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.flows.classify import classify_flow
from galaxy_morphology.io.registry import LoadedModel, ResolvedModel
from galaxy_morphology.tasks.classify import ClassifyError, classify_file, rejects_path_for
from tests.factories import catalogue, with_values, write_snapshot
from tests.serving.champion import MODEL_NAME, TrainedStore, train_champion

pytestmark = pytest.mark.usefixtures("prefect_harness")

runner = CliRunner()

SPOILED = {  # row -> (cells, reason, words in the detail)
    1: ({"mag_r": np.nan}, "missing_value", "mag_r"),
    4: ({"stellar_mass": -9999.0}, "sentinel_-9999", "stellar_mass"),
    6: ({"deVAB_r": 1.5}, "axis_ratio_outside_(0,1]", "deVAB_r"),
    9: ({"expRad_r": 0.0}, "non_positive_radius", "expRad_r"),
    13: ({"redshift": np.inf}, "missing_value", "redshift: infinite"),
}


@pytest.fixture(scope="module")
def store(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return train_champion(tmp_path_factory.mktemp("classify-champion"))


@pytest.fixture
def tracking(store: TrainedStore, monkeypatch: pytest.MonkeyPatch) -> TrainedStore:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.tracking_uri)
    return store


def settings_file(tmp_path: Path, chunk_rows: int = 7) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(f"classify:\n  chunk_rows: {chunk_rows}\n")
    return path


def spoiled_catalogue(n_rows: int = 40) -> pd.DataFrame:
    frame = catalogue(n_rows)
    for row, (cells, _, _) in SPOILED.items():
        frame = with_values(frame, row, **cells)
    frame["mag_g"] = frame["mag_g"].astype(object)
    frame.loc[17, "mag_g"] = "bright"  # a word where a number belongs
    return frame


def test_classify_csv_with_bad_rows(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = spoiled_catalogue()
    source = write_snapshot(frame, tmp_path / "in" / "catalogue.csv.gz")
    output = tmp_path / "out" / "predictions.parquet"
    summary = classify_flow(str(source), str(output), settings_file=str(settings_file(tmp_path)))

    predictions = pd.read_parquet(output)
    rejects = pd.read_parquet(rejects_path_for(output))
    assert rejects_path_for(output) == tmp_path / "out" / "predictions.rejects.parquet"
    assert len(predictions) + len(rejects) == len(frame) == summary.input_rows
    assert (summary.scored, summary.rejected) == (len(frame) - 6, 6)
    assert list(predictions.columns) == ["objid", "label", "p_elliptical", "model_name", "model_version"]
    assert set(predictions["label"]) <= {"elliptical", "spiral"}
    assert predictions["p_elliptical"].between(0, 1).all()
    assert (predictions["model_name"] == MODEL_NAME).all()
    assert (predictions["model_version"] == tracking.version).all()
    assert predictions["objid"].dtype == "int64"
    bad_ids = {int(frame.loc[row, "objid"]) for row in [*SPOILED, 17]}
    assert set(predictions["objid"]).isdisjoint(bad_ids)
    assert set(predictions["objid"]) | set(rejects["objid"]) == set(frame["objid"])  # every id, all digits
    by_id = rejects.set_index("objid")
    for row, (_, reason, words) in SPOILED.items():
        objid = int(frame.loc[row, "objid"])
        assert by_id.loc[objid, "reason"] == reason
        assert words in by_id.loc[objid, "detail"]
    word = by_id.loc[int(frame.loc[17, "objid"])]
    assert word["reason"] == "not_a_number"
    assert "mag_g" in word["detail"] and "bright" in word["detail"]
    assert summary.reasons == {
        "missing_value": 2,
        "sentinel_-9999": 1,
        "axis_ratio_outside_(0,1]": 1,
        "non_positive_radius": 1,
        "not_a_number": 1,
    }
    assert sorted(path.name for path in output.parent.iterdir()) == [
        "predictions.parquet",
        "predictions.rejects.parquet",
    ]


def test_classify_parquet_matches_csv(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = catalogue(30)
    csv_out, parquet_out = tmp_path / "a.parquet", tmp_path / "b.parquet"
    settings = str(settings_file(tmp_path, chunk_rows=8))
    classify_flow(str(write_snapshot(frame, tmp_path / "c.csv")), str(csv_out), settings_file=settings)
    parquet = write_snapshot(frame, tmp_path / "c.parquet")
    classify_flow(str(parquet), str(parquet_out), settings_file=settings)
    pd.testing.assert_frame_equal(pd.read_parquet(csv_out), pd.read_parquet(parquet_out))
    assert len(pd.read_parquet(csv_out)) == 30


def test_only_unlabelled(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = catalogue(40)  # every 4th row is uncertain
    frame = with_values(frame, 3, mag_r=-9999.0)  # an uncertain row, rejected
    frame = with_values(frame, 0, mag_r=-9999.0)  # a labelled row: skipped, not rejected
    source = write_snapshot(frame, tmp_path / "catalogue.csv")
    output = tmp_path / "unlabelled.parquet"
    result = runner.invoke(
        app,
        [
            *("classify", "--input", str(source), "--output", str(output)),
            *("--only-unlabelled", "--settings", str(settings_file(tmp_path))),
        ],
    )
    assert result.exit_code == 0, result.output
    uncertain_ids = set(frame.loc[frame["uncertain"] == 1, "objid"])
    predictions = pd.read_parquet(output)
    rejects = pd.read_parquet(rejects_path_for(output))
    assert set(predictions["objid"]) | set(rejects["objid"]) == uncertain_ids
    assert len(predictions) == 9 and list(rejects["objid"]) == [frame.loc[3, "objid"]]
    for words in ("input rows: 40", "skipped labelled: 30", "classified: 9", "rejected: 1", str(output)):
        assert words in " ".join(result.output.split()), result.output


def test_only_unlabelled_needs_the_uncertain_column(tracking: TrainedStore, tmp_path: Path) -> None:
    source = write_snapshot(catalogue(8).drop(columns=["uncertain"]), tmp_path / "c.csv")
    with pytest.raises(SchemaError, match="uncertain"):
        classify_flow(str(source), str(tmp_path / "o.parquet"), only_unlabelled=True)
    assert list(tmp_path.iterdir()) == [source]


def test_missing_column_is_a_clear_error_and_leaves_nothing(tracking: TrainedStore, tmp_path: Path) -> None:
    source = write_snapshot(catalogue(8).drop(columns=["deVRad_r"]), tmp_path / "c.csv")
    output = tmp_path / "out" / "o.parquet"
    result = runner.invoke(app, ["classify", "--input", str(source), "--output", str(output)])
    assert result.exit_code == 2
    assert "missing required column(s): 'deVRad_r'" in result.output
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_aliases_and_extra_columns_are_accepted(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = catalogue(10).rename(columns={"objid": "dr7objid", "redshift": "z"}).assign(note="x")
    output = tmp_path / "o.parquet"
    summary = classify_flow(str(write_snapshot(frame, tmp_path / "c.csv")), str(output))
    assert summary.scored == 10
    assert list(pd.read_parquet(output)["objid"]) == list(frame["dr7objid"])


def test_corrupt_later_chunk_leaves_no_file(tracking: TrainedStore, tmp_path: Path) -> None:
    """A line with extra fields deep in the file (pandas reads ~256 kB ahead, so 3,000 rows)."""
    source = write_snapshot(catalogue(3000), tmp_path / "c.csv")
    lines = source.read_text().splitlines()
    lines[2500] += ",1,2,3"
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out" / "o.parquet"
    output.parent.mkdir()
    with pytest.raises(ClassifyError, match=r"cannot read .*c\.csv \(after [1-9]\d* rows\).*line 2501"):
        classify_flow(str(source), str(output), settings_file=str(settings_file(tmp_path, chunk_rows=500)))
    assert list(output.parent.iterdir()) == []


class FailingModel:
    """Scores the first chunk, then raises (a model or machine failure mid-way)."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("scoring failed")
        return pd.DataFrame({"label": ["spiral"] * len(data), "p_elliptical": [0.1] * len(data)})


def test_failure_mid_way_keeps_the_previous_output(tmp_path: Path) -> None:
    source = write_snapshot(catalogue(20), tmp_path / "c.csv")
    output = tmp_path / "o.parquet"
    output.write_bytes(b"previous result")
    model = LoadedModel(FailingModel(), ResolvedModel("models:/m@champion", "models:/m/1", "m", "1", None))
    with pytest.raises(RuntimeError, match="scoring failed"):
        classify_file(source, output, model, chunk_rows=5)
    assert model.model.calls == 2  # type: ignore[attr-defined]
    assert output.read_bytes() == b"previous result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.csv", "o.parquet"]


def test_unknown_model_is_a_clear_error(tracking: TrainedStore, tmp_path: Path) -> None:
    source = write_snapshot(catalogue(4), tmp_path / "c.csv")
    result = runner.invoke(
        app,
        [
            *("classify", "--input", str(source), "--output", str(tmp_path / "o.parquet")),
            *("--model-uri", "models:/nothing-here@champion"),
        ],
    )
    assert result.exit_code == 2
    assert "model models:/nothing-here@champion not found in the registry" in result.output
    assert list(tmp_path.iterdir()) == [source]
