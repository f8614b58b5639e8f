"""Tuning on a Dask cluster (parallel_backend) gives the same result as the local run for the same seed."""

from __future__ import annotations

import pytest
from distributed import Client, LocalCluster

from galaxy_morphology.core.training import SearchBudget, tune
from galaxy_morphology.io.cluster import ClusterError, ordered_map, parallel_backend
from tests.core.test_training import labelled


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as local:
        yield local


@pytest.mark.parametrize("family", ["random_forest", "knn"])
def test_dask_search_matches_the_local_search(cluster: LocalCluster, family: str) -> None:
    train = labelled(80, 40, seed=7)
    local = tune(family, train, SearchBudget("random", 4, 3, n_jobs=1, seed=11))
    with parallel_backend(cluster.scheduler_address):
        remote = tune(family, train, SearchBudget("random", 4, 3, n_jobs=-1, seed=11))
    assert remote.best_params == local.best_params
    assert remote.cv_mean == pytest.approx(local.cv_mean, abs=1e-12)
    assert remote.cv_std == pytest.approx(local.cv_std, abs=1e-12)
    assert remote.n_candidates == local.n_candidates
    assert tasks_seen(cluster) > 0  # the search really ran on the cluster


def tasks_seen(cluster: LocalCluster) -> int:
    with Client(cluster.scheduler_address) as client:
        return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.task_prefixes))


def square_unless_seven(number: int, offset: int) -> int:
    if number == 7:
        raise ValueError("seven is not allowed")
    return number * number + offset


def test_ordered_map_keeps_the_input_order(cluster: LocalCluster) -> None:
    results = ordered_map(cluster.scheduler_address, square_unless_seven, iter(range(7)), 1, window=3)
    assert list(results) == [number * number + 1 for number in range(7)]


def test_ordered_map_names_the_failed_item(cluster: LocalCluster) -> None:
    with pytest.raises(
        ClusterError, match=r"item 7 failed on the Dask cluster at .*ValueError: seven is not allowed"
    ):
        list(
            ordered_map(
                cluster.scheduler_address,
                square_unless_seven,
                iter(range(20)),
                0,
                describe=lambda n: f"item {n}",
            )
        )


def test_ordered_map_runs_setup_once_on_every_worker_first(cluster: LocalCluster) -> None:
    with Client(cluster.scheduler_address) as client:
        client.run(clear_marks)
    results = ordered_map(cluster.scheduler_address, square_unless_seven, iter(range(4)), 0, setup=mark_ready)
    assert list(results) == [0, 1, 4, 9]
    with Client(cluster.scheduler_address) as client:
        marks = client.run(marks_on_worker)
    assert sorted(marks.values()) == [1, 1]  # each of the two workers ran it once


def test_a_failed_setup_names_the_worker_and_reads_no_item(cluster: LocalCluster) -> None:
    read: list[int] = []

    def items():
        read.append(0)
        yield 0

    with pytest.raises(
        ClusterError,
        match=r"worker tcp://127\.0\.0\.1:\d+ of the Dask cluster at .* could not get "
        r"ready: RuntimeError: no model here",
    ):
        list(ordered_map(cluster.scheduler_address, square_unless_seven, items(), 0, setup=refuse))
    assert read == []


MARKS: list[int] = []


def clear_marks() -> None:
    MARKS.clear()


def mark_ready() -> None:
    MARKS.append(1)


def marks_on_worker() -> int:
    return len(MARKS)


def refuse() -> None:
    raise RuntimeError("no model here")
