"""Pure monitoring pieces: ranges, batch preparation, values, report files, alert channels."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galaxy_morphology.core.settings import MetricRange
from galaxy_morphology.monitoring import alerts
from galaxy_morphology.monitoring.batch import (
    BatchError,
    batch_values,
    evidently_report,
    finite,
    prepare_batch,
    read_batch,
    scored_frame,
    snapshot_values,
)
from galaxy_morphology.monitoring.ranges import Check, breaches, check_ranges, insufficient_reason
from galaxy_morphology.monitoring.report import alert_text, checks_table, report_folder, write_report
from tests.factories import raw_frame, write_snapshot

RANGES = {
    "f1_macro": MetricRange(min=0.9),
    "drift_share": MetricRange(max=0.5),
    "roc_auc": MetricRange(min=0.95),
}


def test_check_ranges_pass_fail_and_not_computed() -> None:
    checks = check_ranges({"f1_macro": 0.8, "drift_share": 0.25, "roc_auc": float("nan")}, RANGES)
    assert [(c.metric, c.status) for c in checks] == [
        ("f1_macro", "fail"),
        ("drift_share", "pass"),
        ("roc_auc", "not computed"),
    ]
    assert checks[0].range == ">= 0.9" and checks[1].range == "<= 0.5"
    assert [c.metric for c in breaches(checks)] == ["f1_macro"]


def test_insufficient_batch_is_never_breached() -> None:
    reason = insufficient_reason(12, {"spiral": 9, "elliptical": 3}, min_rows=50, min_per_class=5)
    assert reason is not None and "min_rows 50" in reason and "3 elliptical" in reason
    assert insufficient_reason(60, {"spiral": 30, "elliptical": 30}, 50, 10) is None
    checks = check_ranges({"f1_macro": 0.1}, RANGES, insufficient=True)
    assert {c.status for c in checks} == {"insufficient"} and not breaches(checks)


def test_prepare_batch_cleans_and_labels(tmp_path: Path) -> None:
    path = write_snapshot(raw_frame(5, 4, 2), tmp_path / "batch.parquet")
    batch = prepare_batch(read_batch(path), str(path))
    assert batch.counts["labelled"] == 9 and batch.counts["unlabelled"] == 2
    assert batch.per_class == {"spiral": 5, "elliptical": 4}
    assert len(batch.digest) == 16


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.drop(columns=["elliptical", "uncertain"]),
            "missing label column.*elliptical, uncertain",
        ),
        (lambda f: f.assign(stellar_mass=-9999.0), "no clean rows"),
        (lambda f: f.assign(mag_r="bright"), "column 'mag_r': expected numbers"),
        (lambda f: f.drop(columns=["redshift"]), "redshift"),
    ],
)
def test_bad_batches_name_the_problem(change, message: str, tmp_path: Path) -> None:
    path = write_snapshot(change(raw_frame()), tmp_path / "bad.csv")
    with pytest.raises(BatchError, match=message):
        prepare_batch(read_batch(path), str(path))


def test_read_batch_refuses_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="file not found"):
        read_batch(tmp_path / "absent.csv")
    (tmp_path / "batch.json").write_text("{}")
    with pytest.raises(BatchError, match="unsupported file type"):
        read_batch(tmp_path / "batch.json")


def test_batch_values_and_evidently_drift() -> None:
    rng = np.random.default_rng(0)
    frame = prepare_batch(raw_frame(40, 40, 0, seed=3), "mem").labelled
    truth = frame["label"].to_numpy()
    p = np.where(truth == "elliptical", 0.9, 0.1)
    values = batch_values(truth, p)
    assert values["f1_macro"] == 1.0 and values["confusion.true_spiral_predicted_spiral"] == 40
    predictions = pd.DataFrame({"label": truth, "p_elliptical": p})
    current = scored_frame(frame, predictions)
    shifted = current.copy()
    shifted["redshift"] = shifted["redshift"] + 1.0 + rng.normal(0, 0.01, len(shifted))
    snapshot, extracted = evidently_report(shifted, current)
    assert extracted["drifted_columns"] >= 1 and 0 < extracted["drift_share"] <= 1
    assert "drift.redshift" in extracted and extracted["evidently.accuracy"] == 1.0
    assert snapshot_values(snapshot.dict())["drift_share"] == extracted["drift_share"]
    assert finite({"a": 1, "b": float("nan"), "c": "x", "d": True}) == {"a": 1.0}


def test_report_files_and_texts(tmp_path: Path) -> None:
    folder = report_folder(tmp_path / "reports", "abcdef0123456789ffff")
    assert folder.name.endswith("-abcdef0123456789")
    written = write_report(folder, None, {"values": {"roc_auc": float("nan"), "f1_macro": 0.5}})
    assert json.loads(written["values"].read_text())["values"] == {"f1_macro": 0.5, "roc_auc": None}
    checks = [Check("f1_macro", 0.5, ">= 0.9", "fail"), Check("drift_share", 0.1, "<= 0.5", "pass")]
    assert "| f1_macro | 0.5000 | >= 0.9 | **FAIL** |" in checks_table(checks)
    subject, body = alert_text(breaches(checks), "galaxy-morphology", "3", "b.csv", "/r")
    assert "v3" in subject and "f1_macro = 0.5000 outside allowed >= 0.9" in body and "/r" in body


def test_breach_events_one_per_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = []
    monkeypatch.setattr("prefect.events.emit_event", lambda **kwargs: sent.append(kwargs) or object())
    checks = [Check("f1_macro", 0.5, ">= 0.9", "fail"), Check("roc_auc", 0.6, ">= 0.95", "fail")]
    assert alerts.emit_breaches(checks, "galaxy-morphology", "2", "/r") == 2
    assert sent[0]["event"] == "galaxy.monitoring.breach"
    assert sent[0]["resource"]["prefect.resource.id"] == "galaxy.model.galaxy-morphology"
    assert sent[1]["payload"] == {
        "metric": "roc_auc",
        "value": 0.6,
        "range": ">= 0.95",
        "model_version": "2",
        "report": "/r",
    }


def test_no_channel_only_warns(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("GALAXY_TEST_NO_SUCH_URL", raising=False)
    with caplog.at_level(logging.WARNING):
        delivery = alerts.send_notification(
            "s", "b", {}, None, "GALAXY_TEST_NO_SUCH_URL", logging.getLogger("t")
        )
    assert not delivery.delivered and "NOT notified" in caplog.text


def scored(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``frame`` with a label and a noisy but good p_elliptical (what the flow scores)."""
    labelled = prepare_batch(frame, "batch").labelled
    truth = (labelled["label"] == "elliptical").to_numpy()
    noise = np.random.default_rng(seed).uniform(0, 0.4, len(truth))
    proba = np.where(truth, 1 - noise, noise)
    predictions = pd.DataFrame(
        {"label": np.where(proba >= 0.5, "elliptical", "spiral"), "p_elliptical": proba}
    )
    return scored_frame(labelled, predictions)


def test_every_value_a_batch_yields_is_a_known_range_name() -> None:
    from galaxy_morphology.core.metric_names import AGREEMENT, monitored_names
    from galaxy_morphology.monitoring.batch import agreement_value

    current, reference = scored(raw_frame(30, 30, 0, seed=3), 3), scored(raw_frame(30, 30, 0, seed=4), 4)
    values = batch_values(current["label"].to_numpy(), current["p_elliptical"].to_numpy())
    values.update(evidently_report(current, reference)[1])
    batch = prepare_batch(raw_frame(10, 10, 30, seed=3), "batch")
    predictions = pd.DataFrame({"label": "spiral", "p_elliptical": np.linspace(0, 1, len(batch.unlabelled))})
    values[AGREEMENT] = agreement_value(batch, scored_frame(batch.unlabelled, predictions))
    assert set(values) == set(monitored_names())


def test_a_check_that_cannot_be_computed_makes_the_batch_insufficient_never_a_pass() -> None:
    from galaxy_morphology.core.settings import MonitoringSettings
    from galaxy_morphology.monitoring.assess import assess

    frame = raw_frame(40, 40, 0, seed=5)
    batch = prepare_batch(frame, "batch")
    settings = MonitoringSettings(
        ranges={"f1_macro": MetricRange(min=0.5), "drift_share": MetricRange(max=0.5)}
    )
    judged = assess(batch, scored(frame, 5), None, "none", settings)  # no training reference: no drift
    assert {c.metric: c.status for c in judged.checks} == {"f1_macro": "pass", "drift_share": "not computed"}
    assert judged.status == "insufficient"
    assert judged.insufficient is not None and "could not compute drift_share" in judged.insufficient
    assert not judged.breached


def test_a_votes_only_batch_is_judged_by_its_agreement_with_the_volunteers() -> None:
    from galaxy_morphology.core.settings import MonitoringSettings
    from galaxy_morphology.monitoring.assess import assess

    frame = raw_frame(40, 40, 0, seed=6).drop(columns=["spiral", "elliptical", "uncertain"])
    batch = prepare_batch(frame, "votes")
    assert not batch.has_labels and len(batch.unlabelled) == 80
    settings = MonitoringSettings()  # the default ranges, agreement_spearman >= 0.5 among them
    share = batch.unlabelled["p_el_debiased"].to_numpy()
    for p_elliptical, status in ((share**2, "pass"), (1 - share, "breach")):
        predictions = pd.DataFrame({"label": "spiral", "p_elliptical": p_elliptical})
        judged = assess(batch, None, None, "none", settings, scored_frame(batch.unlabelled, predictions))
        statuses = {c.metric: c.status for c in judged.checks}
        assert statuses.pop("agreement_spearman") == ("pass" if status == "pass" else "fail")
        assert set(statuses.values()) == {"not applicable"} and judged.status == status
    too_few = prepare_batch(frame.head(20), "votes")
    judged = assess(too_few, None, None, "none", settings, None)
    assert judged.status == "insufficient" and "20 unlabelled rows < min_rows 50" in str(judged.insufficient)
