"""Batch classification: the flow, the ``galaxy classify`` command, rejects and atomic output."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin
from typer.testing import CliRunner

from galaxy_morphology.cli import app
from galaxy_morphology.core.prepare import SchemaError
from galaxy_morphology.core.settings import SETTINGS_FILE_ENV
from galaxy_morphology.flows.classify import classify_flow
from galaxy_morphology.io import cluster as cluster_module
from galaxy_morphology.io.registry import LoadedModel, ResolvedModel
from galaxy_morphology.io.tables import temporary_beside
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


@pytest.fixture(autouse=True)
def no_settings_file_left_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """`galaxy ... --settings` exports GALAXY_SETTINGS_FILE for the process: undone after each test."""
    monkeypatch.setenv(SETTINGS_FILE_ENV, "settings.yaml")
    monkeypatch.delenv(SETTINGS_FILE_ENV)


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
    assert list(predictions.columns) == [
        *("input_row", "objid", "ra", "dec"),
        *("label", "p_elliptical", "model_name", "model_version"),
    ]
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


def classify(source: Path, output: Path, *options: str) -> tuple[int, str]:
    result = runner.invoke(app, ["classify", "--input", str(source), "--output", str(output), *options])
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    return lines[0]


def test_output_that_is_a_directory_publishes_neither_file(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = with_values(catalogue(12), 3, mag_r=-9999.0)  # one reject: both files have content
    source = write_snapshot(frame, tmp_path / "c.csv")
    output = tmp_path / "out" / "predictions.parquet"
    output.mkdir(parents=True)
    code, text = classify(source, output)
    assert code == 2, text
    assert "predictions.parquet" in one_error_line(text)
    assert sorted(path.name for path in output.parent.iterdir()) == ["predictions.parquet"]
    assert output.is_dir() and list(output.iterdir()) == []


def test_rejects_path_that_is_a_directory_publishes_neither_file(
    tracking: TrainedStore, tmp_path: Path
) -> None:
    source = write_snapshot(catalogue(12), tmp_path / "c.csv")
    output = tmp_path / "predictions.parquet"
    rejects_path_for(output).mkdir()
    code, text = classify(source, output)
    assert code == 2, text
    assert "predictions.rejects.parquet" in one_error_line(text)
    assert not output.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.csv", "predictions.rejects.parquet"]


def test_failed_publication_restores_the_previous_pair(tracking: TrainedStore, tmp_path: Path) -> None:
    """The rejects are published first; when the predictions cannot be, the old rejects come back."""
    source = write_snapshot(with_values(catalogue(12), 3, mag_r=-9999.0), tmp_path / "c.csv")
    output = tmp_path / "predictions.parquet"
    rejects = rejects_path_for(output)
    rejects.write_bytes(b"previous rejects")
    output.mkdir()  # the predictions' rename fails after the rejects' succeeded
    code, text = classify(source, output)
    assert code == 2, text
    one_error_line(text)
    assert rejects.read_bytes() == b"previous rejects"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.csv", output.name, rejects.name]


def test_empty_input_file_is_a_clear_error(tracking: TrainedStore, tmp_path: Path) -> None:
    source = tmp_path / "empty.csv"
    source.write_bytes(b"")
    output = tmp_path / "o.parquet"
    code, text = classify(source, output)
    assert code == 2, text
    line = one_error_line(text)
    assert "empty.csv" in line and "empty" in line.removeprefix("error: ").replace("empty.csv", "")
    assert list(tmp_path.iterdir()) == [source]


def test_corrupt_gzip_stream_is_a_clear_error(tracking: TrainedStore, tmp_path: Path) -> None:
    """A gzip file whose deflate stream is damaged mid-way (zlib.error while reading)."""
    plain = write_snapshot(catalogue(3000), tmp_path / "plain.csv").read_bytes()
    packed = bytearray(gzip.compress(plain))
    middle = len(packed) // 2
    packed[middle : middle + 64] = bytes(64)  # zeros inside the compressed stream
    source = tmp_path / "c.csv.gz"
    source.write_bytes(bytes(packed))
    output = tmp_path / "out" / "o.parquet"
    code, text = classify(source, output, "--settings", str(settings_file(tmp_path, chunk_rows=500)))
    assert code == 2, text
    assert "c.csv.gz" in one_error_line(text)
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_a_later_run_removes_what_a_killed_run_left(tracking: TrainedStore, tmp_path: Path) -> None:
    source = write_snapshot(catalogue(12), tmp_path / "c.csv")
    output = tmp_path / "predictions.parquet"
    # what a run killed with SIGKILL leaves: temporaries named after its host and (dead) process
    dead = dead_pid()
    left = [temporary_beside(path, pid=dead) for path in (output, rejects_path_for(output))]
    for path in left:
        path.write_bytes(b"half a file")
    alive = temporary_beside(output)  # one of a run still going in this process: kept
    alive.write_bytes(b"in progress")
    other_host = output.with_name(f".{output.name}.{socket.gethostname()}x-{dead}.0123456789ab.tmp")
    other_host.write_bytes(b"another machine's run")
    code, text = classify(source, output)
    assert code == 0, text
    assert not any(path.exists() for path in left)
    assert alive.exists() and other_host.exists()
    assert len(pd.read_parquet(output)) == 12


def dead_pid() -> int:
    """The id of a process that has ended (a child that exited and was reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_outputs_join_back_to_the_input_rows(tracking: TrainedStore, tmp_path: Path) -> None:
    """Rounded, repeated objids (as in the shared snapshot): input_row is the key, in input order."""
    frame = spoiled_catalogue(30)
    frame["objid"] = 1237648702966038528  # every row the same id, as rounded ids collide
    frame.loc[::5, "ra"] = np.nan  # a missing pass-through value is carried, not a reject
    source = write_snapshot(frame, tmp_path / "c.csv")
    output = tmp_path / "o.parquet"
    summary = classify_flow(str(source), str(output), settings_file=str(settings_file(tmp_path)))
    predictions = pd.read_parquet(output)
    rejects = pd.read_parquet(rejects_path_for(output))
    assert list(predictions.columns[:4]) == ["input_row", "objid", "ra", "dec"]
    assert list(rejects.columns) == ["input_row", "objid", "ra", "dec", "reason", "detail"]
    assert summary.pass_through == ["objid", "ra", "dec"]  # no specobjid in this input
    assert predictions["input_row"].is_monotonic_increasing and rejects["input_row"].is_monotonic_increasing
    rows = sorted([*predictions["input_row"], *rejects["input_row"]])
    assert rows == list(range(len(frame)))
    assert set(rejects["input_row"]) == {*SPOILED, 17}
    joined = predictions.merge(frame.reset_index(names="input_row"), on="input_row", suffixes=("", "_in"))
    assert len(joined) == len(predictions)
    pd.testing.assert_series_equal(joined["ra"], joined["ra_in"], check_names=False)
    pd.testing.assert_series_equal(joined["dec"], joined["dec_in"], check_names=False)
    assert (joined["objid"] == joined["objid_in"]).all()
    assert predictions["ra"].isna().sum() == frame.loc[list(predictions["input_row"]), "ra"].isna().sum() > 0


def test_pass_through_option_and_setting(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = catalogue(12).assign(specobjid=np.arange(12) + 299489677444933632, field="f", plate=266)
    source = write_snapshot(frame, tmp_path / "c.parquet")
    output = tmp_path / "o.parquet"
    classify_flow(str(source), str(output), settings_file=str(settings_file(tmp_path)))
    assert list(pd.read_parquet(output).columns[:5]) == ["input_row", "objid", "specobjid", "ra", "dec"]
    assert list(pd.read_parquet(output)["specobjid"]) == list(frame["specobjid"])  # every digit

    result = runner.invoke(
        app,
        [
            *("classify", "--input", str(source), "--output", str(output)),
            *("--pass-through", "plate,field,specobjid,missing_col?"),
        ],
    )
    assert result.exit_code == 0, result.output
    predictions = pd.read_parquet(output)
    assert list(predictions.columns[:4]) == ["input_row", "plate", "field", "specobjid"]
    assert predictions["plate"].dtype == "int64" and (predictions["field"] == "f").all()
    assert "carried: plate, field, specobjid" in result.output

    settings = tmp_path / "through.yaml"
    settings.write_text("classify:\n  pass_through: [objid, plate]\n")
    result = runner.invoke(
        app, ["classify", "--input", str(source), "--output", str(output), "--settings", str(settings)]
    )
    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(output).columns[:3]) == ["input_row", "objid", "plate"]


def test_a_chosen_pass_through_column_must_exist(tracking: TrainedStore, tmp_path: Path) -> None:
    source = write_snapshot(catalogue(6), tmp_path / "c.csv")
    output = tmp_path / "o.parquet"
    result = runner.invoke(
        app, ["classify", "--input", str(source), "--output", str(output), "--pass-through", "objid,plate"]
    )
    assert result.exit_code == 2, result.output
    assert "missing required column(s): 'plate'" in one_error_line(result.output)
    assert list(tmp_path.iterdir()) == [source]
    result = runner.invoke(
        app, ["classify", "--input", str(source), "--output", str(output), "--pass-through", "objid,label"]
    )
    assert result.exit_code == 2, result.output
    assert "'label' is a column the outputs already have" in result.output


def parts_of(frame: pd.DataFrame, folder: Path, sizes: list[int], suffixes: list[str]) -> Path:
    """``frame`` cut into consecutive parts named part.0, part.1, ... part.10 (name order != text order)."""
    folder.mkdir(parents=True)
    start = 0
    for number, (size, suffix) in enumerate(zip(sizes, suffixes, strict=True)):
        write_snapshot(
            frame.iloc[start : start + size].reset_index(drop=True), folder / f"part.{number}{suffix}"
        )
        start += size
    (folder / "_SUCCESS").write_text("")
    return folder


def test_a_directory_or_glob_of_parts_equals_the_whole_file(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = spoiled_catalogue(40)
    whole = tmp_path / "whole.parquet"
    settings = str(settings_file(tmp_path, chunk_rows=4))
    classify_flow(str(write_snapshot(frame, tmp_path / "c.csv")), str(whole), settings_file=settings)
    sizes = [3, 5, 2, 4, 4, 2, 3, 5, 4, 3, 5]  # 11 parts: part.10 must come last
    parts = parts_of(frame, tmp_path / "parts", sizes, [".csv", ".csv.gz", ".parquet"] * 3 + [".csv", ".csv"])
    from_dir, from_glob = tmp_path / "dir.parquet", tmp_path / "glob.parquet"
    summary = classify_flow(str(parts), str(from_dir), settings_file=settings)
    classify_flow(str(parts / "part.*"), str(from_glob), settings_file=settings)
    assert summary.parts == 11 and summary.input_rows == 40
    for result in (from_dir, from_glob):
        pd.testing.assert_frame_equal(pd.read_parquet(result), pd.read_parquet(whole))
        pd.testing.assert_frame_equal(
            pd.read_parquet(rejects_path_for(result)), pd.read_parquet(rejects_path_for(whole))
        )


def test_an_empty_directory_or_glob_is_a_clear_error(tracking: TrainedStore, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for source in (tmp_path / "empty", tmp_path / "nothing-*.csv"):
        code, text = classify(source, tmp_path / "o.parquet")
        assert code == 2, text
        assert "no CSV, CSV.gz or Parquet files" in one_error_line(text)


def test_a_bad_part_names_the_part_and_leaves_nothing(tracking: TrainedStore, tmp_path: Path) -> None:
    frame = catalogue(20)
    parts = parts_of(frame, tmp_path / "parts", [10, 10], [".csv", ".csv"])
    (parts / "part.1.csv").write_text("objid,nothing\n1,2\n")
    output = tmp_path / "out" / "o.parquet"
    code, text = classify(parts, output)
    assert code == 2, text
    line = one_error_line(text)
    assert "part.1.csv" in line and "missing required column(s)" in line
    assert not output.parent.exists() or list(output.parent.iterdir()) == []


def test_progress_is_reported_per_chunk(
    tracking: TrainedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    source = write_snapshot(catalogue(30), tmp_path / "c.csv")
    with caplog.at_level("INFO"):
        state = classify_flow(
            str(source),
            str(tmp_path / "o.parquet"),
            settings_file=str(settings_file(tmp_path)),
            return_state=True,
        )
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("chunk ")]
    assert len(lines) == 5 and "100% of the input" in lines[-1], lines
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    progress = [artifact for artifact in artifacts if artifact.type == "progress"]
    assert len(progress) == 1 and progress[0].key == "classify-progress"
    assert progress[0].data == 100.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two single-threaded worker processes: each loads the model from the test store itself."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as local:
        yield local


def test_a_local_cluster_gives_the_local_output_row_for_row(
    tracking: TrainedStore, cluster: LocalCluster, tmp_path: Path
) -> None:
    frame = spoiled_catalogue(60)
    parts = parts_of(frame, tmp_path / "parts", [25, 20, 15], [".csv.gz", ".parquet", ".csv"])
    settings = str(settings_file(tmp_path, chunk_rows=6))
    local, remote = tmp_path / "local.parquet", tmp_path / "remote.parquet"
    classify_flow(str(parts), str(local), settings_file=settings)
    code, text = classify(parts, remote, "--settings", settings, "--dask-address", cluster.scheduler_address)
    assert code == 0, text
    assert f"Dask cluster {cluster.scheduler_address}" in text
    pd.testing.assert_frame_equal(pd.read_parquet(remote), pd.read_parquet(local))
    pd.testing.assert_frame_equal(
        pd.read_parquet(rejects_path_for(remote)), pd.read_parquet(rejects_path_for(local))
    )
    assert len(pd.read_parquet(remote)) == 54
    with Client(cluster.scheduler_address) as client:
        calls = client.run(worker_model_calls)
    # each worker loads the model before the first chunk, then every chunk (6 rows, cut at the
    # parts' ends) asks for it on its worker
    assert sum(calls.values()) == 2 + 5 + 4 + 3


IMPORTED_ML = (
    "import sys\n"
    "from galaxy_morphology.cli import run\n"
    "try:\n"
    "    run()\n"
    "except SystemExit as done:\n"
    "    code = done.code\n"
    "print('imported:', sorted(name for name in ('sklearn', 'skops') if name in sys.modules))\n"
    "sys.exit(code)\n"
)


def classify_in_a_new_process(source: Path, output: Path, *options: str) -> str:
    """``galaxy classify`` in a fresh interpreter (this test process has long imported everything)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = ["classify", "--input", str(source), "--output", str(output), *options]
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_ML, *command], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_cluster_run_loads_the_model_on_the_workers_only(
    tracking: TrainedStore, cluster: LocalCluster, tmp_path: Path
) -> None:
    source = write_snapshot(catalogue(12), tmp_path / "c.csv")
    local, remote = tmp_path / "local.parquet", tmp_path / "remote.parquet"
    assert classify_in_a_new_process(source, local) == "imported: ['sklearn', 'skops']"
    address = ("--dask-address", cluster.scheduler_address)
    assert classify_in_a_new_process(source, remote, *address) == "imported: []"
    pd.testing.assert_frame_equal(pd.read_parquet(remote), pd.read_parquet(local))


def worker_model_calls() -> int:
    """How many chunks this worker process scored (each asks for its cached model once)."""
    from galaxy_morphology.tasks.classify import _worker_model

    info = _worker_model.cache_info()
    return info.hits + info.misses


class FailOnWorker(WorkerPlugin):
    """A worker plugin: the worker's model fails on its third chunk (a fault on the cluster)."""

    name = "fail-on-worker"

    def setup(self, worker: object) -> None:
        import galaxy_morphology.tasks.classify as classify_module

        real = classify_module._worker_model
        calls = [0]

        class Failing:
            def __init__(self, model: LoadedModel) -> None:
                self.model = model

            def score(self, frame: pd.DataFrame) -> pd.DataFrame:
                calls[0] += 1
                if calls[0] == 3:
                    raise RuntimeError("worker ran out of memory")
                return self.model.score(frame)

        classify_module._worker_model = lambda source: Failing(real(source))  # type: ignore[assignment]


def test_a_failed_partition_publishes_nothing(tracking: TrainedStore, tmp_path: Path) -> None:
    source = write_snapshot(catalogue(40), tmp_path / "c.csv")
    output = tmp_path / "out" / "o.parquet"
    output.parent.mkdir()
    rejects_path_for(output).write_bytes(b"previous rejects")
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None, host="127.0.0.1") as failing:
        with Client(failing.scheduler_address) as client:
            client.register_plugin(FailOnWorker())
        code, text = classify(
            source,
            output,
            "--settings",
            str(settings_file(tmp_path, 5)),
            "--dask-address",
            failing.scheduler_address,
        )
    assert code == 2, text
    line = one_error_line(text)
    assert "rows 10-14 (c.csv) failed on the Dask cluster" in line and "worker ran out of memory" in line
    assert sorted(path.name for path in output.parent.iterdir()) == ["o.rejects.parquet"]
    assert rejects_path_for(output).read_bytes() == b"previous rejects"


class RefuseModelOnWorker(WorkerPlugin):
    """A worker plugin: the worker refuses the model, as it would a tampered pipeline file."""

    name = "refuse-model-on-worker"

    def setup(self, worker: object) -> None:
        import galaxy_morphology.tasks.classify as classify_module
        from galaxy_morphology.io.registry import RegistryError

        def refuse(source: object) -> None:
            raise RegistryError("refused to load model models:/m/1: untrusted type 'os.system'")

        classify_module._worker_model = refuse  # type: ignore[assignment]


def test_a_model_the_workers_refuse_fails_the_run_before_any_chunk(
    tracking: TrainedStore, tmp_path: Path
) -> None:
    source = write_snapshot(catalogue(40), tmp_path / "c.csv")
    output = tmp_path / "out" / "o.parquet"
    output.parent.mkdir()
    with LocalCluster(
        n_workers=1, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    ) as refusing:
        with Client(refusing.scheduler_address) as client:
            client.register_plugin(RefuseModelOnWorker())
        code, text = classify(source, output, "--dask-address", refusing.scheduler_address)
        with Client(refusing.scheduler_address) as client:
            scored = client.run_on_scheduler(
                lambda dask_scheduler: dask_scheduler.task_prefixes.get("score_chunk_remote")
            )
    assert code == 2, text
    line = one_error_line(text)
    assert f"of the Dask cluster at {refusing.scheduler_address} could not get ready" in line, line
    assert "RegistryError: refused to load model models:/m/1: untrusted type 'os.system'" in line, line
    assert scored is None  # no chunk was sent
    assert list(output.parent.iterdir()) == []


def test_an_unreachable_scheduler_is_a_clear_error(
    tracking: TrainedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", "2s")  # refused connections are retried until then
    source = write_snapshot(catalogue(4), tmp_path / "c.csv")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, text = classify(source, tmp_path / "o.parquet", "--dask-address", f"tcp://127.0.0.1:{port}")
    assert code == 2, text
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in one_error_line(text)
    assert list(tmp_path.iterdir()) == [source]
