"""Progress of a long step, shown in the terminal (run log lines) and in the Prefect UI.

Inside a flow or task run, ``reporting`` publishes a Prefect progress artifact (percent done,
with the ``done/total, elapsed, time left`` line as its description) and logs the same line
to the run's log, which the terminal prints, every ``every_seconds`` while the step runs and
once when it ends. The step itself only advances a ``core.progress.Counter``.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from galaxy_morphology.core.progress import Counter
from galaxy_morphology.io.logs import run_logger


def artifact_key(name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) for ``name``."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


class Reporter:
    """Publishes a counter's line to the run log and to one progress artifact."""

    def __init__(self, title: str, unit: str, counter: Counter, key: str) -> None:
        self.title, self.unit, self.counter, self.log = title, unit, counter, run_logger()
        created = create_progress_artifact(
            progress=0.0, key=artifact_key(key), description=f"{title}: starting"
        )
        self.artifact = cast(UUID, created)  # the synchronous call returns the id, not a coroutine
        self._shown: tuple[int, int | None] | None = None
        self._lock = threading.Lock()

    def update(self, force: bool = False) -> None:
        """Publish the current line, unless nothing was done since the last one (or ``force``)."""
        snapshot = self.counter.snapshot()
        with self._lock:
            if not force and (snapshot.done, snapshot.total) == self._shown:
                return
            self._shown = (snapshot.done, snapshot.total)
            line = f"{self.title}: {snapshot.line(self.unit)}"
            update_progress_artifact(self.artifact, progress=snapshot.percent, description=line)
            self.log.info(line)


@contextmanager
def reporting(
    title: str, unit: str, counter: Counter, key: str, every_seconds: float | None
) -> Iterator[Reporter]:
    """Publish ``counter``'s progress every ``every_seconds`` while the block runs (from a
    background thread; None: only when the block calls ``update``), and once at its end."""
    reporter = Reporter(title, unit, counter, key)
    stop = threading.Event()
    context = contextvars.copy_context()  # the run's Prefect client and logger, for the thread

    def tick() -> None:
        while every_seconds is not None and not stop.wait(every_seconds):
            context.run(reporter.update)

    thread = threading.Thread(target=tick, name=f"progress-{key}", daemon=True)
    thread.start()
    try:
        yield reporter
    finally:
        stop.set()
        thread.join()
    reporter.update(force=True)
