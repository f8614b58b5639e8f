"""The read-ahead that overlaps reading the next chunk with scoring this one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from galaxy_morphology.io.tables import read_ahead


def test_yields_every_item_in_order() -> None:
    assert list(read_ahead(iter(range(50)))) == list(range(50))
    assert list(read_ahead(iter([]))) == []


def test_reads_the_next_item_while_the_consumer_works() -> None:
    produced: list[int] = []

    def slow_source() -> Iterator[int]:
        for number in range(3):
            produced.append(number)
            yield number

    seen_ahead = []
    for item in read_ahead(slow_source(), depth=1):
        deadline = time.monotonic() + 5
        while len(produced) < min(item + 2, 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_ahead.append(len(produced) - 1 - item)
    assert seen_ahead == [1, 1, 0]  # item n+1 was read before item n was done with


def test_keeps_at_most_depth_items_waiting() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for number in range(100):
            produced.append(number)
            yield number

    stream = read_ahead(source(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)
    # 0 handed over, 1 and 2 waiting, 3 read and blocked on the full queue
    assert len(produced) == 4
    stream.close()


def test_a_producer_error_is_raised_where_its_item_would_be() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("chunk 3 is corrupt")

    received = []
    with pytest.raises(ValueError, match="chunk 3 is corrupt"):
        for item in read_ahead(failing()):
            received.append(item)
    assert received == [1, 2]


def test_leaving_early_stops_the_producer_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.set()

    before = threading.active_count()
    for item in read_ahead(endless()):
        if item == 5:
            break
    assert closed.wait(5)
    assert threading.active_count() == before
