"""The ``galaxy`` command line: every pipeline entry point, one subcommand each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import typer

from galaxy.settings import SETTINGS_FILE_ENV, SettingsError

app = typer.Typer(
    help="galaxy-morphology: classify SDSS galaxies as elliptical or spiral (Galaxy Zoo 1 labels).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Source = Literal["snapshot", "skyserver"]
SettingsOption = Annotated[
    Path | None,
    typer.Option("--settings", help="settings YAML file (default: settings.yaml, or $GALAXY_SETTINGS_FILE)"),
]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="data source: snapshot or skyserver (default: settings)")
]
SnapshotOption = Annotated[
    Path | None, typer.Option("--snapshot", help="snapshot file: CSV, CSV.gz or Parquet")
]


@app.callback()
def main() -> None:
    """galaxy-morphology pipeline commands."""


def _use_settings_file(path: Path | None) -> None:
    if path is not None:
        if not path.exists():
            raise typer.BadParameter(f"settings file not found: {path}", param_hint="--settings")
        os.environ[SETTINGS_FILE_ENV] = str(path)


def _check_source(source: str | None) -> Source | None:
    if source is not None and source not in ("snapshot", "skyserver"):
        raise typer.BadParameter(f"must be snapshot or skyserver, got {source!r}", param_hint="--source")
    return source  # type: ignore[return-value]


def _fail(error: Exception) -> None:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def ingest(
    source: SourceOption = None,
    snapshot: SnapshotOption = None,
    settings: SettingsOption = None,
) -> None:
    """Run the data flow: ingest -> validate -> clean -> label -> split, printing row counts."""
    from flows.data import data_flow
    from galaxy.prepare import SchemaError
    from tasks.ingest import IngestError

    _use_settings_file(settings)
    try:
        prepared = data_flow(source=_check_source(source), snapshot=str(snapshot) if snapshot else None)
    except (SettingsError, SchemaError, IngestError) as error:
        _fail(error)
        return
    typer.echo(f"source: {prepared.source}")
    for step, count in prepared.counts.items():
        typer.echo(f"  {step:>20}: {count}")
    typer.echo("dropped per reason:")
    for reason, count in prepared.dropped.items():
        typer.echo(f"  {reason:>28}: {count}")


@app.command()
def train(
    source: SourceOption = None,
    snapshot: SnapshotOption = None,
    n_iter: Annotated[
        int | None, typer.Option("--n-iter", min=1, help="search iterations per family")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="small search budget, for tests and demos")] = False,
    search: Annotated[str | None, typer.Option("--search", help="random or halving")] = None,
    family: Annotated[
        list[str] | None, typer.Option("--family", help="train only this family (repeatable)")
    ] = None,
    settings: SettingsOption = None,
) -> None:
    """Run the training flow: tune, evaluate, register, and gate the champion alias."""
    from flows.training import training_flow
    from galaxy.prepare import SchemaError
    from tasks.ingest import IngestError
    from tasks.tracking import RegistryError

    _use_settings_file(settings)
    if search is not None and search not in ("random", "halving"):
        raise typer.BadParameter(f"must be random or halving, got {search!r}", param_hint="--search")
    try:
        summary = training_flow(
            source=_check_source(source),
            snapshot=str(snapshot) if snapshot else None,
            n_iter=n_iter,
            quick=quick,
            search=search,  # type: ignore[arg-type]
            families=family or None,
        )
    except (SettingsError, SchemaError, IngestError, RegistryError) as error:
        _fail(error)
        return
    metrics = summary.test_metrics
    typer.echo(f"winner: {summary.winner}")
    typer.echo(
        "test: "
        + ", ".join(
            f"{key} {metrics[key]:.4f}"
            for key in (
                "f1_macro",
                "f1_weighted",
                "accuracy",
                "roc_auc",
                "recall_elliptical",
                "recall_spiral",
            )
        )
    )
    typer.echo(
        f"registered: version {summary.version} -> alias '{summary.alias}' ({summary.decision.reason})"
    )


if __name__ == "__main__":
    app()
