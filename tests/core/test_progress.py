from __future__ import annotations

import threading

import pytest

from galaxy_morphology.core.progress import Counter, Snapshot, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (45, "45s"), (59.6, "1m00s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_duration_is_short_and_readable(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_time_left_extrapolates_the_time_per_unit_of_work() -> None:
    clock = Clock()
    counter = Counter(clock)
    assert counter.snapshot() == Snapshot(0, None, 0.0, None)
    counter.plan(300)
    clock.now += 72
    counter.advance(120)
    snapshot = counter.snapshot()
    assert snapshot.remaining == pytest.approx(108.0)
    assert snapshot.line("fits") == "120/300 fits (40%), 1m12s elapsed, about 1m48s left"


def test_weighted_units_count_as_their_work() -> None:
    clock = Clock()
    counter = Counter(clock)
    counter.plan(4, work=10.0)  # e.g. two cheap fits, then two dearer ones
    clock.now += 5
    counter.advance(work=0.5)
    clock.now += 5
    counter.advance(work=0.5)  # 0.5 of work per 5 s, 9 left
    snapshot = counter.snapshot()
    assert (snapshot.done, snapshot.total) == (2, 4)
    assert snapshot.remaining == pytest.approx(90.0)


def test_before_any_unit_the_line_says_it_is_estimating_and_at_the_end_done() -> None:
    clock = Clock()
    counter = Counter(clock)
    counter.plan(9)
    assert counter.snapshot().line("fits").endswith("0s elapsed, estimating time left")
    clock.now += 3
    counter.advance(9)
    assert counter.snapshot().line("fits") == "9/9 fits (100%), 3s elapsed, done"


def test_advances_from_many_threads_are_all_counted() -> None:
    counter = Counter()
    counter.plan(8000)
    threads = [threading.Thread(target=lambda: [counter.advance() for _ in range(1000)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.snapshot().done == 8000


def test_the_start_up_before_the_first_unit_is_not_extrapolated() -> None:
    clock = Clock()
    counter = Counter(clock)
    counter.plan(100)
    clock.now += 60  # workers starting
    counter.advance(2)
    assert counter.snapshot().remaining == pytest.approx(60 * 98 / 2)  # all we know yet
    clock.now += 10
    counter.advance(20)  # 20 fits in 10 s once running
    assert counter.snapshot().remaining == pytest.approx(10 * 78 / 20)
