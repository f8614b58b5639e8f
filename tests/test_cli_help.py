"""Every ``galaxy`` command, including ones added later, answers ``--help``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from galaxy_morphology.cli import app

runner = CliRunner()


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command below ``group``, as the words one types after ``galaxy``."""
    # typer vendors its own click: recognise a group by its commands, not by its class
    subcommands: dict[str, Any] = getattr(group, "commands", {})
    for name, command in subcommands.items():
        yield (*prefix, name)
        yield from command_paths(command, (*prefix, name))


ALL_COMMANDS = sorted(command_paths(typer.main.get_command(app)))


def test_top_level_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "galaxy-morphology" in result.output
    for path in ALL_COMMANDS:
        if len(path) == 1:
            assert path[0] in result.output


def test_ingest_help() -> None:
    result = runner.invoke(app, ["ingest", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--source", "--snapshot", "--settings"):
        assert option in result.output


def test_commands_are_found() -> None:
    assert ("ingest",) in ALL_COMMANDS


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert " ".join(path) in result.output
