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
