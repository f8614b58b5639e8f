"""The champion gate under the registry lock: all-or-nothing registration, races, killed runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from galaxy_morphology.core.families import build_pipeline
from galaxy_morphology.core.gate import GateRule
from galaxy_morphology.core.prepare import LABEL
from galaxy_morphology.core.training import evaluate, features_and_target
from galaxy_morphology.io.registry import COMPLETE, INCOMPLETE, REGISTRATION_TAG, Registry
from galaxy_morphology.io.tracking import Tracking
from galaxy_morphology.tasks import tracking as tracking_tasks
from galaxy_morphology.tasks.tracking import gate_and_register
from tests.factories import raw_frame

MODEL = "gate-test"
EXPERIMENT = "gate-test"


def labelled(seed: int, n: int = 60) -> pd.DataFrame:
    frame = raw_frame(n, n, 0, seed=seed)
    return frame.assign(**{LABEL: np.where(frame["elliptical"] == 1, "elliptical", "spiral")})


def fitted(train: pd.DataFrame, shuffle_share: float, seed: int) -> Pipeline:
    """A logistic pipeline whose quality falls with the share of shuffled training labels."""
    features, target = features_and_target(train)
    rng = np.random.default_rng(seed)
    picked = rng.random(len(target)) < shuffle_share
    target[picked] = rng.permutation(target[picked])
    return build_pipeline("logistic", seed).fit(features, target)


@pytest.fixture
def store(prefect_harness: None, tmp_path: Path) -> Iterator[Registry]:
    tracking = Tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    yield Registry(tracking, MODEL, "champion")


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return labelled(seed=1, n=80), labelled(seed=2, n=40)


def register(store: Registry, model: Pipeline, test: pd.DataFrame) -> tuple[str, str]:
    run_id = store.tracking.start_run(EXPERIMENT, "candidate", {})
    decision, version = gate_and_register(
        store, run_id, model, test, evaluate(model, test), GateRule(0.0), {}
    )
    store.tracking.end_run(run_id)
    return decision.alias, version


def test_a_registered_version_carries_every_tag_and_is_complete(store: Registry, data) -> None:
    train, test = data
    alias, version = register(store, fitted(train, 0.0, 0), test)
    tags = store.client.get_model_version(MODEL, version).tags
    assert alias == "champion" and store.version_for("champion") == version
    assert tags[REGISTRATION_TAG] == COMPLETE
    assert tags["gate.decision"] == "champion"


def test_a_failure_while_moving_the_alias_leaves_no_version(
    store: Registry, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    register(store, fitted(train, 0.0, 0), test)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C (or a SIGTERM turned into one) at the worst moment

    monkeypatch.setattr(store.client, "set_registered_model_alias", interrupted)
    with pytest.raises(KeyboardInterrupt):
        register(store, fitted(train, 0.0, 1), test)
    versions = store.client.search_model_versions(f"name = '{MODEL}'")
    assert [str(v.version) for v in versions] == ["1"]


def test_a_version_left_incomplete_by_a_killed_run_is_removed_by_the_next_registration(
    store: Registry, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    register(store, fitted(train, 0.0, 0), test)

    # kill -9 right after the version was created: no except clause ran
    def killed(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(store.client, "update_registered_model", killed)
    monkeypatch.setattr(store.client, "delete_model_version", lambda *args: None)
    with pytest.raises(SystemExit):
        register(store, fitted(train, 0.3, 1), test)
    assert store.client.get_model_version(MODEL, "2").tags[REGISTRATION_TAG] == INCOMPLETE
    monkeypatch.undo()

    _, version = register(store, fitted(train, 0.0, 2), test)
    names = sorted(str(v.version) for v in store.client.search_model_versions(f"name = '{MODEL}'"))
    assert names == ["1", "3"] and version == "3"


def test_two_trainings_that_finish_together_are_judged_in_turn_and_the_better_wins(
    store: Registry, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = data
    register(store, fitted(train, 0.9, 0), test)  # a weak champion both will beat
    score = tracking_tasks.score_version

    def slow_score(*args: object) -> dict[str, float]:
        time.sleep(2.0)  # both runs would read the same champion without the lock
        return score(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(tracking_tasks, "score_version", slow_score)
    good, fair = fitted(train, 0.0, 1), fitted(train, 0.5, 2)
    assert evaluate(good, test).metrics["f1_macro"] > evaluate(fair, test).metrics["f1_macro"]
    results: dict[str, tuple[str, str]] = {}

    def run(name: str, model: Pipeline, delay: float) -> None:
        time.sleep(delay)
        results[name] = register(store, model, test)

    threads = [
        threading.Thread(target=run, args=("good", good, 0.0)),
        threading.Thread(target=run, args=("fair", fair, 0.5)),  # the last writer without a lock
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert store.version_for("champion") == results["good"][1]
    assert results["fair"][0] == "challenger"
    fair_tags = store.client.get_model_version(MODEL, results["fair"][1]).tags
    assert fair_tags["gate.champion_version"] == results["good"][1]  # judged against the winner


def test_the_lock_is_a_prefect_global_concurrency_limit_of_one_slot(store: Registry, data) -> None:
    from prefect import get_client

    train, test = data
    register(store, fitted(train, 0.0, 0), test)
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(f"galaxy-registry-{MODEL}")
    assert limit.limit == 1 and limit.active_slots == 0  # released after the registration
