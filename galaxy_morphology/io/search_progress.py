"""Fits done of a scikit-learn search, counted through scikit-learn's callback API.

scikit-learn (1.9) calls a search's callbacks (``search.set_callbacks``) at the end of every
(candidate, fold) fit, in the process that ran the fit: usually a joblib worker. Each worker
sends one short message per finished fit to a listener in the search's own process (a local
socket of ``multiprocessing.connection``), which advances a ``core.progress.Counter``. A fit
run in the search's process advances it directly. A worker that cannot reach the listener (a
Dask worker on another host) counts nothing; its fits and their results are unaffected.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingGridSearchCV, HalvingRandomSearchCV

from galaxy_morphology.core.progress import Counter

FIT = "candidate-split-evaluation"  # scikit-learn's name for one (candidate, fold) fit
SEARCH = "search"
HALVING_ROUND = "halving-iteration"

# the search's process: listener address -> what a finished fit of that round does
_consumers: dict[str, Callable[[int], None]] = {}
# a worker's process: the listener of the search it works for, and its connection (None:
# unreachable from here); a worker serves one search at a time
_connection: tuple[str, Connection | None] = ("", None)
_send_lock = threading.Lock()


def halving_plan(
    first: int, rounds: int, factor: int, min_resources: int, max_resources: int
) -> tuple[list[int], list[float]]:
    """Candidates and relative cost per fit of each round of a successive-halving search.

    Round ``i`` keeps ``ceil(candidates / factor)`` of the previous round and fits each on
    ``min(min_resources * factor**i, max_resources)`` rows (scikit-learn's schedule without
    aggressive elimination); the cost of a fit is taken as proportional to its rows.
    """
    candidates = [first]
    for _ in range(rounds - 1):
        candidates.append(math.ceil(candidates[-1] / factor))
    rows = [min(int(factor**i * min_resources), max_resources) for i in range(rounds)]
    return candidates, [r / rows[0] for r in rows]


class SearchProgress:
    """A scikit-learn fit callback counting a search's fits into ``counter``.

    Set it on one search (``search.set_callbacks(SearchProgress(counter))``). The copies
    that joblib sends to its workers carry only the listener's address and key.
    """

    def __init__(self, counter: Counter) -> None:
        self.counter: Counter | None = counter
        self.address = ""
        self.authkey = b""
        self._weights = [1.0]
        self._listener: Listener | None = None
        self._accepted: list[Connection] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "authkey": self.authkey}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.counter = None  # a worker's copy counts nothing itself: it sends to the listener
        self.address, self.authkey = state["address"], state["authkey"]
        self._weights, self._listener, self._accepted = [1.0], None, []

    def setup(self, estimator: Any, context: Any) -> None:
        self.authkey = os.urandom(32)
        self._listener = Listener(authkey=self.authkey, backlog=128)
        self.address = str(self._listener.address)
        _consumers[self.address] = self._finished
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def on_fit_task_begin(self, estimator: Any, context: Any) -> None:
        if self.counter is None:
            return
        halving = isinstance(estimator, HalvingRandomSearchCV | HalvingGridSearchCV)
        if context.task_name == SEARCH and not halving:
            self.counter.plan(context.max_subtasks)
        elif context.task_name == HALVING_ROUND and context.task_id == 0:
            folds = estimator.n_splits_
            candidates, self._weights = halving_plan(
                context.max_subtasks // folds,
                context.parent.max_subtasks,
                estimator.factor,
                estimator.min_resources_,
                estimator.max_resources_,
            )
            work = sum(c * w for c, w in zip(candidates, self._weights, strict=True))
            self.counter.plan(folds * sum(candidates), folds * work)

    def on_fit_task_end(self, estimator: Any, context: Any) -> bool:
        if context.task_name == FIT:
            parent = context.parent
            round_ = parent.task_id if parent is not None and parent.task_name == HALVING_ROUND else 0
            _send(self.address, self.authkey, round_)
        return False  # never stop the search

    def teardown(self, estimator: Any, context: Any) -> None:
        _consumers.pop(self.address, None)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for connection in self._accepted:  # ends their threads
            connection.close()

    def _finished(self, round_: int) -> None:
        if self.counter is not None:
            self.counter.advance(1, self._weights[round_] if round_ < len(self._weights) else 1.0)

    def _accept(self, listener: Listener) -> None:
        while True:
            try:
                connection = listener.accept()
            except (OSError, AuthenticationError):  # closed at teardown, or a stranger
                if self._listener is None:
                    return
                continue
            self._accepted.append(connection)
            threading.Thread(target=_serve, args=(connection, self._finished), daemon=True).start()


def _serve(connection: Connection, consume: Callable[[int], None]) -> None:
    """Count a worker's fits; each is acknowledged, so a fit's result never overtakes its count."""
    try:
        while True:
            consume(connection.recv())
            connection.send(None)
    except (EOFError, OSError):
        return


def _send(address: str, authkey: bytes, round_: int) -> None:
    consume = _consumers.get(address)
    if consume is not None:  # a fit in the search's own process
        consume(round_)
        return
    global _connection
    with _send_lock:
        known, connection = _connection
        if known != address:
            if connection is not None:
                connection.close()
            try:
                connection = Client(address, authkey=authkey)
            except (OSError, AuthenticationError):
                connection = None
            _connection = (address, connection)
        if connection is None:
            return
        try:
            connection.send(round_)
            connection.recv()
        except (EOFError, OSError):
            _connection = (address, None)
