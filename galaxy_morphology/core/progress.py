"""Progress of a long step: units done of a total, elapsed time and an estimate of what is left.

Pure and thread-safe: workers report finished units from any thread, a reporter reads
snapshots. Units may weigh differently (a halving search's later fits use more rows), so the
estimate extrapolates the time per unit of work, not per unit. The time before the first unit
ends (starting worker processes: a minute on a busy machine) happens once, so once a later
unit has ended the rate is measured from the first one on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    done: int
    total: int | None  # None until the step knows its size
    elapsed: float  # seconds since the step started
    remaining: float | None  # seconds, None until the first unit is done

    @property
    def percent(self) -> float:
        if not self.total:
            return 0.0
        return min(100.0, 100.0 * self.done / self.total)

    def line(self, unit: str) -> str:
        """``120/300 fits (40%), 1m12s elapsed, about 1m48s left``."""
        total = "?" if self.total is None else f"{self.total:,}"
        left = "estimating time left" if self.remaining is None else f"about {duration(self.remaining)} left"
        if self.total is not None and self.done >= self.total:
            left = "done"
        return f"{self.done:,}/{total} {unit} ({self.percent:.0f}%), {duration(self.elapsed)} elapsed, {left}"


def duration(seconds: float) -> str:
    """A short human duration: ``45s``, ``3m05s``, ``1h02m``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Counter:
    """Units done of a total, with their work, safe to advance from several threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._done = 0
        self._total: int | None = None
        self._work_done = 0.0
        self._work_total: float | None = None
        self._first: tuple[float, float] | None = None  # time and work done when the first unit ended

    def plan(self, units: int, work: float | None = None) -> None:
        """The step's size: ``units`` in all, weighing ``work`` together (default: one each)."""
        with self._lock:
            self._total, self._work_total = units, float(units if work is None else work)

    def advance(self, units: int = 1, work: float | None = None) -> None:
        with self._lock:
            self._done += units
            self._work_done += units if work is None else work
            if self._first is None and self._work_done > 0:
                self._first = (self._clock(), self._work_done)

    def snapshot(self) -> Snapshot:
        with self._lock:
            elapsed = self._clock() - self._started
            remaining = None
            if self._work_total is not None and self._first is not None:
                left = max(self._work_total - self._work_done, 0.0)
                since, work_then = self._first
                if self._work_done > work_then:
                    remaining = (self._clock() - since) * left / (self._work_done - work_then)
                else:
                    remaining = elapsed * left / self._work_done
            return Snapshot(self._done, self._total, elapsed, remaining)
