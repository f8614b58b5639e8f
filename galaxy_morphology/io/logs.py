"""The logger of the current Prefect flow or task run, else a standard logger."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def run_logger(name: str = "galaxy_morphology") -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger (lines show in the UI) inside a run; ``logging.getLogger`` outside."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


class _WithoutTraceback(logging.Formatter):
    """``inner``'s lines, with an exception of ``errors`` as its one line (no traceback)."""

    def __init__(self, inner: logging.Formatter, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.inner = inner
        self.errors = errors

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info and isinstance(record.exc_info[1], self.errors)):
            return self.inner.format(record)
        # the record goes on to the other handlers (the run's log in the UI keeps the traceback)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def terminal_without_tracebacks(errors: tuple[type[BaseException], ...]) -> None:
    """Prefect's terminal log writes a flow's or task's exception of ``errors`` on one line.

    A command reports such an error itself, as one ``error:`` line; without this, the failed
    task's traceback would be printed above it. The run's log in the Prefect UI keeps it.
    """
    import prefect  # noqa: F401  # sets up Prefect's logging, whose handlers are changed here
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            console = isinstance(handler, PrefectConsoleHandler)
            if console and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter(), errors))
