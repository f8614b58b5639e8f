"""ASGI middleware in front of MLflow's scoring app: request limits and clean refusals.

MLflow's scoring app takes any body, however large or slow, answers some malformed requests
with a 500, and returns parse errors with a ``stack_trace`` of install paths. ``Guard`` sits in
front of it, for ``POST /invocations`` only:

- a body larger than ``max_request_bytes`` is a 413 (from ``Content-Length`` before anything is
  read, or as soon as a chunked body passes the limit); a body not complete within
  ``body_timeout_seconds`` is a 408; no ``Content-Type`` is a 415;
- a JSON body is parsed once here to refuse what MLflow would turn into a 500 or a wrong
  answer: nesting too deep for the parser, values that are lists or objects, more than
  ``max_records`` rows (413), and a ``dataframe_split`` whose ``index`` does not match its
  ``data`` rows;
- every error answer leaves without ``stack_trace``, with its message cut to
  ``MAX_MESSAGE_CHARS`` (a 50 MB string sent in is not echoed back).

A valid request reaches MLflow's app with its body unchanged, and its answer is passed
through untouched; the cost is one ``json.loads`` of the body. When a ``Shortcut`` is given
(``serving.fast_path``), the parsed body is offered to it first; what it does not answer goes
on to MLflow. A request of up to ``INLINE_ROWS`` rows is answered on the event loop (a
millisecond or two; a hop to a worker thread would cost about as much again); a larger one
in a worker thread, as MLflow runs its model, under MLflow's request timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Parsed = tuple[dict[str, Any], int]  # a JSON body and its number of rows

MAX_MESSAGE_CHARS = 2_000
INLINE_ROWS = 16
DATA_KEYS = ("dataframe_records", "dataframe_split", "inputs", "instances")
# the types json.loads gives for plain values (it never gives subclasses)
SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class Limits:
    """What one request may hold. The defaults are the ``serving`` settings' defaults (a test
    keeps them equal), for the serving image, which runs without the project's settings."""

    max_request_bytes: int = 8 * 1024 * 1024
    max_records: int = 10_000
    body_timeout_seconds: float = 10.0


class Shortcut(Protocol):
    def answer(self, content_type: str, payload: Any) -> bytes | None: ...


class Refused(Exception):
    """A request answered here with ``status`` and ``message``; MLflow never sees it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Guard:
    """Limits and clean refusals around MLflow's scoring app (see the module's docstring)."""

    def __init__(self, app: ASGIApp, limits: Limits, shortcut: Shortcut | None = None) -> None:
        self.app = app
        self.limits = limits
        self.shortcut = shortcut
        self.timeout = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/invocations" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            content_type, body, parsed = await self._checked_body(scope, receive)
        except Refused as refused:
            await _answer(send, refused.status, refused.message)
            return
        except _Disconnected:
            return
        if self.shortcut is not None and parsed is not None:
            payload, rows = parsed
            try:
                if rows <= INLINE_ROWS:
                    answer = self.shortcut.answer(content_type, payload)
                else:
                    answer = await asyncio.wait_for(
                        asyncio.to_thread(self.shortcut.answer, content_type, payload), self.timeout
                    )
            except TimeoutError:  # MLflow's own answer past its request timeout
                await _send(send, 504, b"application/json", b"Request processing time exceeded limit")
                return
            if answer is not None:
                await _send(send, 200, b"application/json", answer)
                return
        await self.app(scope, _replay(body, receive), _without_traces(send))

    async def _checked_body(self, scope: Scope, receive: Receive) -> tuple[str, bytes, Parsed | None]:
        """The Content-Type, the body and, for a JSON table, the parsed body and its rows."""
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").strip()
        if not content_type:
            raise Refused(415, "no Content-Type header: send application/json or text/csv")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_request_bytes:
            raise Refused(413, _too_large(int(declared), self.limits))
        body = await read_body(receive, self.limits)
        mime_type = content_type.split(";", 1)[0].strip().lower()
        return content_type, body, check_payload(body, mime_type, self.limits.max_records)


class _Disconnected(Exception):
    """The client went away before its body was complete."""


async def read_body(receive: Receive, limits: Limits) -> bytes:
    """The whole body, or ``Refused`` (413 past the size limit, 408 past the time limit)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limits.max_request_bytes:
                    raise Refused(413, _too_large(size, limits, at_least=True))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise Refused(
            408,
            f"the request body did not arrive within {limits.body_timeout_seconds:g} s "
            "(serving.body_timeout_seconds)",
        ) from None


def _too_large(size: int, limits: Limits, at_least: bool = False) -> str:
    return (
        f"request body of {'more than ' if at_least else ''}{size:,} bytes: the limit is "
        f"{limits.max_request_bytes:,} bytes (serving.max_request_bytes); send fewer rows per request"
    )


def check_payload(body: bytes, mime_type: str, max_records: int) -> Parsed | None:
    """Refuse what MLflow would answer with a 500 or a wrong result; leave the rest to it.

    Returns the parsed JSON body and its number of rows when it is an object with one data
    key (``None`` otherwise).
    """
    if mime_type == "text/csv":
        rows = body.count(b"\n") - 1 + (not body.endswith(b"\n"))
        _check_rows(rows, max_records)
        return None
    if mime_type != "application/json":
        return None  # MLflow answers other content types with its own 415
    try:
        payload = json.loads(body)
    except RecursionError:
        raise Refused(400, "the JSON body is nested too deeply: send rows of numbers") from None
    except ValueError:
        return None  # MLflow reports where the JSON is malformed
    if not isinstance(payload, dict):
        return None
    keys = [key for key in DATA_KEYS if key in payload]
    if len(keys) != 1:
        return None  # MLflow names the keys it accepts
    rows = _rows(keys[0], payload[keys[0]])
    _check_rows(rows, max_records)
    params = payload.get("params")
    if params is not None and not (isinstance(params, dict) and _flat(params.values())):
        raise Refused(400, "'params' must be an object of plain values")
    return payload, rows


def _check_rows(rows: int, max_records: int) -> None:
    if rows > max_records:
        raise Refused(
            413, f"{rows:,} rows in one request: the limit is {max_records:,} (serving.max_records)"
        )


def _rows(key: str, data: Any) -> int:
    """The number of rows ``data`` holds, once its shape is known to be a table of plain values."""
    if key == "dataframe_split":
        return _split_rows(data)
    if isinstance(data, list):
        for number, row in enumerate(data):
            if not (isinstance(row, dict) and _flat(row.values())):
                raise Refused(400, f"'{key}' row {number}: expected an object of column values")
        return len(data)
    if isinstance(data, dict) and key == "inputs":
        for column in data.values():
            if not (isinstance(column, list) and _flat(column)):
                raise Refused(400, "'inputs': expected lists of plain values per column")
        return max((len(column) for column in data.values()), default=0)
    raise Refused(400, f"'{key}': expected a list of rows")


def _split_rows(split: Any) -> int:
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        raise Refused(400, "'dataframe_split': expected an object with 'columns' and 'data' lists")
    data = split["data"]
    for number, row in enumerate(data):
        if not (isinstance(row, list) and _flat(row)):
            raise Refused(400, f"'dataframe_split' data row {number}: expected a list of plain values")
    index = split.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        found = f"{len(index)} entries" if isinstance(index, list) else type(index).__name__
        raise Refused(400, f"'dataframe_split': 'index' has {found} for {len(data)} data row(s)")
    return len(data)


def _flat(values: Any) -> bool:
    return SCALARS.issuperset(map(type, values))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read here once, then the client's own events."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _without_traces(send: Send) -> Send:
    """Pass a 2xx/3xx answer through; an error answer loses ``stack_trace`` and long text."""
    state: dict[str, Any] = {}

    async def sanitising(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            state["start"], state["body"] = message, []
            return
        if "start" not in state or message["type"] != "http.response.body":
            await send(message)
            return
        state["body"].append(message.get("body", b""))
        if not message.get("more_body", False):
            start = state["start"]
            content_type = dict(start.get("headers", [])).get(b"content-type", b"text/plain")
            await _send(send, start["status"], content_type, _cleaned(b"".join(state["body"])))

    return sanitising


def _cleaned(body: bytes) -> bytes:
    """MLflow's error JSON without ``stack_trace``, its message cut; other text cut."""
    text = body.decode("utf-8", errors="replace")
    try:
        error = json.loads(text)
    except ValueError:
        return _cut(text).encode()
    if not isinstance(error, dict):
        return _cut(text).encode()
    error.pop("stack_trace", None)
    if isinstance(error.get("message"), str):
        error["message"] = _cut(error["message"])
    return json.dumps(error).encode()


def _cut(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[:MAX_MESSAGE_CHARS] + f"... ({len(text) - MAX_MESSAGE_CHARS:,} characters cut)"


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error_code": "BAD_REQUEST", "message": _cut(message)}).encode()
    await _send(send, status, b"application/json", body)


async def _send(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
