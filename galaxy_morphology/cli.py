"""The ``galaxy`` command line: every pipeline entry point, one subcommand each."""

from __future__ import annotations

import gc
import os
import signal
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click

from galaxy_morphology.core.errors import UserError
from galaxy_morphology.core.settings import FAMILY_NAMES, SETTINGS_FILE_ENV

app = typer.Typer(
    help="galaxy-morphology: classify SDSS galaxies as elliptical or spiral (Galaxy Zoo 1 labels).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Source = Literal["settings", "snapshot", "skyserver"]
# galaxy monitor: 0 pass, 1 a metric left its range, 3 the batch could not be judged
MONITOR_EXIT_CODES = {"breach": 1, "insufficient": 3}
TEST_METRICS = (
    "f1_macro",
    "f1_weighted",
    "accuracy",
    "roc_auc",
    "recall_elliptical",
    "recall_spiral",
    "brier",
)
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


INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)
# set unless the caller set them: no usage reports (Prefect's server, MLflow and Evidently
# send them by default, and print an error where there is no network), no download bars
PROCESS_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",  # Evidently's (and MLflow's) opt-out
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # not "Creating initial MLflow database tables..."
    # the temporary server's own log: when it stops it can report events it had not flushed
    # with tracebacks (seen on a busy machine); the command's own errors still show
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
}
# library warnings about the libraries' own use (deprecations, pip and setuptools notes, MLflow's
# advice on model logging) are not the user's business; the command's own errors still show
QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
QUIET_MODULES = r"(mlflow|setuptools|pkg_resources|_distutils_hack|pydantic|prefect|evidently|alembic)(\..*)?"


@app.callback()
def main() -> None:
    """galaxy-morphology pipeline commands."""
    # Ctrl-C and `kill` (SIGTERM) unwind the command instead of ending it on the spot: its
    # flow run and MLflow run are marked as not finished, and the temporary Prefect server
    # and the search workers stop with it
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _interrupt)
    # before Prefect, MLflow or Evidently is imported, and inherited by the temporary Prefect
    # server and the search workers; the temporary server needs more than 20 s to start on a
    # busy machine
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)
    quiet_library_warnings()


def quiet_library_warnings() -> None:
    for category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", module=QUIET_MODULES)


def show(table: Table) -> None:
    """Print a table and a blank line after it."""
    console = Console(highlight=False, soft_wrap=False)
    console.print(table)
    console.print()


def aligned(
    headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None, left: int = 1
) -> Table:
    """A borderless table: the first ``left`` columns left-aligned, the others right-aligned."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for number, header in enumerate(headers):
        table.add_column(header, justify="left" if number < left else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the command at once
    typer.echo(
        f"interrupted ({signal.Signals(signum).name}): stopping, runs are marked as not finished", err=True
    )
    raise SystemExit(INTERRUPTED)


def _start(settings: Path | None) -> None:
    """Before a command's flow: its settings file, and user errors on one line in the terminal."""
    from galaxy_morphology.io.logs import terminal_without_tracebacks

    _use_settings_file(settings)
    terminal_without_tracebacks((UserError,))


def _use_settings_file(path: Path | None) -> None:
    if path is not None:
        if not path.exists():
            raise typer.BadParameter(f"settings file not found: {path}", param_hint="--settings")
        os.environ[SETTINGS_FILE_ENV] = str(path)


def _check_source(source: str | None) -> Source:
    """The flows' ``source`` parameter: ``settings`` when no --source is given."""
    if source is None:
        return "settings"
    if source not in ("snapshot", "skyserver"):
        raise typer.BadParameter(f"must be snapshot or skyserver, got {source!r}", param_hint="--source")
    return source  # type: ignore[return-value]


def _fail(error: Exception) -> None:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def ingest(
    source: SourceOption = None,
    snapshot: SnapshotOption = None,
    max_rows: Annotated[
        int | None,
        typer.Option("--max-rows", min=1, help="SkyServer: fetch only the first N rows (a quick try)"),
    ] = None,
    export_dir: Annotated[
        Path | None,
        typer.Option(
            "--export-dir",
            help="also write labelled.csv, unlabelled.csv, train.csv, validation.csv and test.csv here",
        ),
    ] = None,
    settings: SettingsOption = None,
) -> None:
    """Run the data flow: ingest -> validate -> clean -> label -> split, printing row counts."""
    from galaxy_morphology.flows.data import data_flow

    _start(settings)
    try:
        prepared = data_flow(
            source=_check_source(source),
            snapshot=str(snapshot or ""),
            max_rows=max_rows or 0,
            export_dir=str(export_dir or ""),
        )
    except UserError as error:
        _fail(error)
        return
    typer.echo(f"source: {prepared.source}")
    show(aligned(["step", "rows"], prepared.counts.items()))
    show(aligned(["dropped per reason", "rows"], prepared.dropped.items()))
    if prepared.exported:
        show(aligned(["file", "rows"], prepared.exported.items()))


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
    if search is not None and search not in ("random", "halving"):  # before the slow imports
        raise typer.BadParameter(f"must be random or halving, got {search!r}", param_hint="--search")
    from galaxy_morphology.flows.training import training_flow

    _start(settings)
    unknown = sorted(set(family or ()) - set(FAMILY_NAMES))
    if unknown:
        raise typer.BadParameter(
            f"unknown family {unknown}: choose from {list(FAMILY_NAMES)}", param_hint="--family"
        )
    chosen: Literal["settings", "random", "halving"] = search or "settings"  # type: ignore[assignment]
    try:
        summary = training_flow(
            source=_check_source(source),
            snapshot=str(snapshot or ""),
            n_iter=n_iter or 0,
            quick=quick,
            search=chosen,
            families=tuple(family or ()),  # type: ignore[arg-type]  # the flow validates the names
        )
    except UserError as error:
        _fail(error)
        return
    show(
        aligned(
            ["family", "CV macro F1", "validation macro F1", ""],
            (
                [
                    family,
                    f"{scores['cv_mean']:.4f} ± {scores['cv_std']:.4f}",
                    f"{scores['val_f1_macro']:.4f}",
                    "winner" if family == summary.winner else "",
                ]
                for family, scores in summary.families.items()
            ),
        )
    )
    metrics, intervals = summary.test_metrics, summary.test_intervals
    show(
        aligned(
            [
                f"test ({summary.winner}, calibration: {summary.calibration})",
                "value",
                "95% bootstrap interval",
            ],
            (
                (key, f"{metrics[key]:.4f}", intervals[key].describe() if key in intervals else "")
                for key in TEST_METRICS
            ),
        )
    )
    if summary.agreement is not None:
        typer.echo(
            f"agreement with the volunteers (Spearman, unlabelled rows): {summary.agreement.describe()}"
        )
    typer.echo(
        f"registered: version {summary.version} -> alias '{summary.alias}' ({summary.decision.reason})"
    )


@app.command()
def monitor(
    batch: Annotated[
        Path | None, typer.Option("--batch", help="labelled batch: CSV, CSV.gz or Parquet")
    ] = None,
    after_specobjid: Annotated[
        int | None,
        typer.Option("--skyserver-after", help="SkyServer window: rows with specobjid above this"),
    ] = None,
    rows: Annotated[
        int | None, typer.Option("--skyserver-rows", min=1, help="SkyServer window: number of rows")
    ] = None,
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="model to monitor (default: models:/<model_name>@<model_alias>)"),
    ] = None,
    settings: SettingsOption = None,
) -> None:
    """Run the monitoring flow on a labelled batch file or a SkyServer window: score it, check
    ranges and drift, report, alert."""
    from galaxy_morphology.flows.monitoring import monitoring_flow

    _start(settings)
    try:
        result = monitoring_flow(
            batch_path=str(batch or ""),
            model_uri=model_uri or "",
            after_specobjid=-1 if after_specobjid is None else after_specobjid,
            rows=rows or 0,
        )
    except UserError as error:
        _fail(error)
        return
    typer.echo(f"status: {result.status} (model version {result.model_version}, batch {result.batch_digest})")
    if result.insufficient:
        typer.echo(f"insufficient: {result.insufficient}")
    show(
        aligned(
            ["check", "value", "range", "status"],
            (
                [
                    check.metric,
                    "n/a" if check.value is None else f"{check.value:.4f}",
                    check.range,
                    check.status,
                ]
                for check in result.checks
            ),
        )
    )
    typer.echo(f"report: {result.report_dir}")
    typer.echo(f"mlflow run: {result.run_id}")
    if result.delivery is not None and not result.delivery.delivered:
        typer.echo(f"alert: NOT delivered ({result.delivery.channel}: {result.delivery.detail})")
    if result.status in MONITOR_EXIT_CODES:
        raise typer.Exit(code=MONITOR_EXIT_CODES[result.status])


@app.command()
def serve(
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="model to serve (default: models:/<model_name>@<model_alias>)"),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="port to listen on")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="uvicorn worker processes")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="OpenMP/BLAS threads per worker")
    ] = None,
    settings: SettingsOption = None,
) -> None:
    """Serve the registered model with MLflow's scoring app behind request limits (in the foreground)."""
    from galaxy_morphology.core.settings import load_settings
    from galaxy_morphology.io.registry import Registry
    from galaxy_morphology.serving.server import ServerError, serve_foreground

    _start(settings)
    try:
        loaded = load_settings(
            {"serving": {"host": host, "port": port, "workers": workers, "threads": threads}}
        )
        # the alias is pinned to its version now: the server answers with the version it names
        resolved = Registry.from_settings(loaded).resolve(model_uri)
    except UserError as error:
        _fail(error)
        return
    serving = loaded.serving
    version = f" (version {resolved.version})" if resolved.version else ""
    typer.echo(
        f"serving {resolved.requested}{version} on http://{serving.host}:{serving.port} "
        f"({serving.workers} worker(s), {serving.threads} thread(s) each)"
    )
    try:
        code = serve_foreground(resolved.uri, loaded.tracking_uri(), serving)
    except ServerError as error:
        _fail(error)
        return
    raise typer.Exit(code=code)


@app.command()
def classify(
    input: Annotated[
        str,
        typer.Option(
            "--input",
            help="catalogue to classify: a CSV, CSV.gz or Parquet file, a directory of such parts, "
            "or a quoted glob ('parts/*.parquet'); parts are read in name order",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", help="predictions Parquet file to write")],
    only_unlabelled: Annotated[
        bool, typer.Option("--only-unlabelled", help="classify only rows whose GZ1 'uncertain' flag is 1")
    ] = False,
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="model to use (default: models:/<model_name>@<model_alias>)"),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(
            "--dask-address",
            help="score on this Dask scheduler, e.g. tcp://host:8786 (default: training.dask_address; "
            "unset: in this process)",
        ),
    ] = None,
    pass_through: Annotated[
        str | None,
        typer.Option(
            "--pass-through",
            help="input columns to copy to the outputs, comma-separated; a name ending in ? only when "
            "present (default: classify.pass_through, objid,specobjid?,ra,dec)",
        ),
    ] = None,
    settings: SettingsOption = None,
) -> None:
    """Classify a catalogue in chunks; invalid rows go to <output stem>.rejects.parquet.

    Both files carry input_row (the row's position in the input) and the pass-through columns.
    """
    from galaxy_morphology.flows.classify import classify_flow

    _start(settings)
    try:
        summary = classify_flow(
            input_path=input,
            output_path=str(output),
            only_unlabelled=only_unlabelled,
            model_uri=model_uri or "",
            dask_address=dask_address or "",
            pass_through=tuple(name.strip() for name in pass_through.split(",")) if pass_through else (),
        )
    except UserError as error:
        _fail(error)
        return
    typer.echo(f"model: {summary.model_uri} ({summary.model_name} v{summary.model_version})")
    engine = "this process" if summary.engine == "local" else f"Dask cluster {summary.engine}"
    typer.echo(f"  {'input parts':>16}: {summary.parts} (scored in {engine})")
    typer.echo(f"  {'input rows':>16}: {summary.input_rows}")
    if only_unlabelled:
        typer.echo(f"  {'skipped labelled':>16}: {summary.skipped}")
    typer.echo(f"  {'classified':>16}: {summary.scored}")
    typer.echo(f"  {'rejected':>16}: {summary.rejected}")
    for reason, count in summary.reasons.items():
        typer.echo(f"    {reason:>28}: {count}")
    typer.echo(f"predictions: {summary.output_path}")
    typer.echo(f"rejects:     {summary.rejects_path}")
    typer.echo(f"join key:    input_row; carried: {', '.join(summary.pass_through) or '-'}")


review_app = typer.Typer(
    help="The retraining review: run it (no subcommand), or decide a paused one (decide).",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(review_app, name="review")
Budget = Literal["champion", "full", "quick"]


@review_app.callback()
def review(
    context: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="review even when none is due")] = False,
    source: SourceOption = None,
    snapshot: SnapshotOption = None,
    budget: Annotated[
        str,
        typer.Option(
            "--budget",
            help="challenger's search budget: champion (the champion's own), full (settings) or quick",
        ),
    ] = "champion",
    quick: Annotated[bool, typer.Option("--quick", help="same as --budget quick (a demo budget)")] = False,
    settings: SettingsOption = None,
) -> None:
    """Run the retraining review: train a challenger (with the champion's budget), compare it with
    the champion, then wait for a maintainer's decision.

    While it waits it prints the flow run id: decide with `galaxy review decide FLOW_RUN_ID ...`
    from another terminal, or in the Prefect UI when PREFECT_API_URL points at a `prefect server
    start` (this command's temporary Prefect server has no UI).
    """
    if context.invoked_subcommand is not None:
        return
    from galaxy_morphology.flows.review import review_flow

    if budget not in ("champion", "full", "quick"):
        raise typer.BadParameter(f"must be champion, full or quick, got {budget!r}", param_hint="--budget")
    chosen: Budget = "quick" if quick else budget  # type: ignore[assignment]  # checked above
    _start(settings)
    try:
        summary = review_flow(
            force=force, source=_check_source(source), snapshot=str(snapshot or ""), budget=chosen
        )
    except UserError as error:
        _fail(error)
        return
    typer.echo(f"review: {summary.outcome}" + (f" ({'; '.join(summary.reasons)})" if summary.reasons else ""))
    if summary.challenger:
        typer.echo(f"compared: {summary.headline}")
        typer.echo(f"challenger budget: {summary.challenger_budget}")
        typer.echo(
            f"decision: {summary.outcome} by {summary.reviewer or 'nobody'}; comment: {summary.comment}"
        )
        if summary.override_reason:
            typer.echo(f"override: {summary.override_reason}")
    typer.echo(f"champion: version {summary.champion_after}")


@review_app.command()
def decide(
    flow_run_id: Annotated[
        str, typer.Argument(help="the paused galaxy-review flow run (printed while it waits)")
    ],
    approve: Annotated[
        bool,
        typer.Option(
            "--approve/--reject",
            help="approve: the challenger goes into service; reject: the champion stays",
            show_default=False,
        ),
    ],
    reviewer: Annotated[str, typer.Option("--reviewer", help="who decides (recorded with the decision)")],
    comment: Annotated[str, typer.Option("--comment", help="why (recorded with the decision)")] = "",
    override_reason: Annotated[
        str,
        typer.Option(
            "--override-reason", help="needed to approve a challenger worse than the champion on macro F1"
        ),
    ] = "",
) -> None:
    """Decide a paused retraining review, as the Resume form of the Prefect UI does.

    Use the same Prefect API as the review (PREFECT_API_URL, or the same Prefect home for the
    temporary server). The review run records the decision and moves the alias on approval.
    """
    from galaxy_morphology.tasks.review import submit_decision

    answer = {
        "approve": approve,
        "reviewer": reviewer,
        "comment": comment,
        "override_reason": override_reason,
    }
    try:
        name = submit_decision(flow_run_id, answer)
    except UserError as error:
        _fail(error)
        return
    verdict = "approved" if approve else "rejected"
    typer.echo(f"{verdict} by {reviewer}: review {name} ({flow_run_id}) resumes and records the decision")


def run() -> None:
    """The ``galaxy`` entry point: a usage error is one line on stderr, with exit code 2."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as error:  # plain `galaxy`: the help
        error.show()
        code = error.exit_code
    except typer.TyperException as error:  # a wrong option, value or command
        context = getattr(error, "ctx", None)  # a usage error knows its command
        where = f" (see: {context.command_path} --help)" if context is not None else ""
        typer.secho(f"error: {error.format_message()}{where}", fg=typer.colors.RED, err=True)
        code = error.exit_code
    except typer.Abort:
        code = INTERRUPTED
    # the process ends now: its objects need no garbage collection on the way out (the
    # interpreter's teardown of MLflow, Prefect and scikit-learn took 0.9 s of every command)
    gc.freeze()
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
