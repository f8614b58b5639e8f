"""Tables on disk: parts of an input, files published together or not at all, leftovers of killed runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galaxy_morphology.io.tables import (
    TableError,
    atomic_paths,
    input_parts,
    remove_stale_temporaries,
    temporary_beside,
)


def test_parts_in_name_order_numbers_as_numbers(tmp_path: Path) -> None:
    names = [
        "part.10.parquet",
        "part.2.csv",
        "part.1.csv.gz",
        "part.0.parquet",
        "_SUCCESS",
        ".part.3.csv.tmp",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "notes.txt").write_text("not a table")
    (tmp_path / "nested.csv").mkdir()
    expected = ["part.0.parquet", "part.1.csv.gz", "part.2.csv", "part.10.parquet"]
    assert [part.name for part in input_parts(tmp_path)] == expected
    assert [part.name for part in input_parts(str(tmp_path / "part.*"))] == expected
    assert [part.name for part in input_parts(str(tmp_path / "part.?.csv*"))] == expected[1:3]
    assert input_parts(tmp_path / "part.2.csv") == [tmp_path / "part.2.csv"]


def test_no_parts_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"no CSV, CSV\.gz or Parquet files"):
        input_parts(tmp_path)
    with pytest.raises(TableError, match=r"no CSV, CSV\.gz or Parquet files"):
        input_parts(str(tmp_path / "*.parquet"))
    with pytest.raises(TableError, match="input file not found"):
        input_parts(tmp_path / "absent.csv")


def test_an_interrupted_block_publishes_nothing_and_leaves_no_temporary(tmp_path: Path) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    first.write_text("old a")
    with pytest.raises(KeyboardInterrupt), atomic_paths(first, second) as (temp_first, temp_second):
        temp_first.write_text("new a")
        temp_second.write_text("new b")
        raise KeyboardInterrupt
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.parquet"]
    assert first.read_text() == "old a"


def test_a_failed_move_puts_back_what_was_there(tmp_path: Path) -> None:
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first.write_text("old a")
    third.mkdir()  # the last move fails: a directory is in the way
    with pytest.raises(IsADirectoryError), atomic_paths(first, second, third) as temporaries:
        for temporary in temporaries:
            temporary.write_text("new")
    assert first.read_text() == "old a"  # moved, then restored
    assert not second.exists()  # moved, then removed: it was not there before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "c"]


def test_a_successful_block_replaces_every_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("old a")
    with atomic_paths(first, second) as (temp_first, temp_second):
        temp_first.write_text("new a")
        temp_second.write_text("new b")
    assert (first.read_text(), second.read_text()) == ("new a", "new b")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b"]


def test_only_temporaries_of_ended_processes_of_this_host_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "o.parquet"
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    dead = temporary_beside(target, pid=pid)
    alive = temporary_beside(target)
    elsewhere = tmp_path / f".o.parquet.another-host-{pid}.0123456789ab.tmp"
    other_target = temporary_beside(tmp_path / "p.parquet", pid=pid)
    for path in (dead, alive, elsewhere, other_target):
        path.write_text("x")
    assert remove_stale_temporaries(target) == [dead]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        path.name for path in (alive, elsewhere, other_target)
    )
