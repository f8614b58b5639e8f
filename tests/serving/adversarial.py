"""Malformed and hostile requests for the scoring server, shared by the tests and the bench script.

Each case is sent to a real server on loopback; what must hold for every one: a 4xx answer,
no ``stack_trace`` and no install path in it, an answer far smaller than what was sent, and a
server that still scores a valid request afterwards.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from tests.factories import raw_frame

INSTALL_MARKERS = (sys.prefix, "site-packages", "Traceback")
# the status recorded when the server reset the connection before its answer could be read
RESET = 0
MAX_ANSWER_BYTES = 10_000


def records(n: int = 3) -> list[dict[str, Any]]:
    """Raw catalogue rows (every column, not only the features), as a client would send them."""
    return json.loads(raw_frame(n_spiral=2, n_elliptical=2, n_uncertain=0).head(n).to_json(orient="records"))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    response = requests.post(f"{url}/invocations", data=body, headers=headers, timeout=120)
    return Answer(response.status_code, response.content)


def json_post(body: bytes | str) -> Callable[[str], Answer]:
    data = body.encode() if isinstance(body, str) else body
    return lambda url: post(url, data, {"Content-Type": "application/json"})


def raw_exchange(url: str, head: bytes, body: bytes = b"", pause: float = 0.0) -> Answer:
    """Send ``head`` and ``body`` on a bare socket (then wait ``pause``) and read the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(head + body)
        time.sleep(pause)
        return read_answer(sock)


def invocations_head(length: int, content_type: str = "application/json") -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def chunked_exchange(url: str, total: int, size: int = 1 << 16) -> Answer:
    """Send a chunked JSON body of ``total`` bytes (no final chunk) and read the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(head)
        for _ in range(total // size):
            sock.sendall(f"{size:x}\r\n".encode() + b"x" * size + b"\r\n")
        return read_answer(sock)


def _split(index: int) -> str:
    row = records(1)[0]
    return json.dumps(
        {"dataframe_split": {"columns": list(row), "data": [list(row.values())], "index": list(range(index))}}
    )


Expected = int | tuple[int, ...]


def cases(max_request_bytes: int, body_timeout: float) -> dict[str, tuple[Callable[[str], Answer], Expected]]:
    """name -> (send it to a server URL, the status or statuses expected), for these limits."""
    one = records(1)[0]
    return {
        "no Content-Type": (
            lambda url: raw_exchange(
                url, invocations_head(2).replace(b"Content-Type: application/json\r\n", b""), b"{}"
            ),
            415,
        ),
        "JSON nested 1,000 levels": (
            json_post('{"dataframe_records": ' + "[" * 1000 + "]" * 1000 + "}"),
            400,
        ),
        "JSON nested 100,000 levels": (json_post("[" * 100_000 + "]" * 100_000), 400),
        "a 62 MB body (Content-Length)": (lambda url: raw_exchange(url, invocations_head(62_000_000)), 413),
        # the server answers 413 as soon as the limit is passed and closes the connection; when
        # some of the body is still unread then (a loaded machine reads slowly), the kernel resets
        # the connection and the 413 can be lost before the client reads it: both mean refused
        "a chunked body past the limit": (
            lambda url: chunked_exchange(url, max_request_bytes + (1 << 16)),
            (413, RESET),
        ),
        "100,000 records": (json_post(json.dumps({"dataframe_records": [{}] * 100_000})), 413),
        "a 50 MB string": (  # its first 64 KiB sent: may be unread when refused, like the above
            lambda url: raw_exchange(
                url, invocations_head(50_000_100), b'{"dataframe_records": [{"mag_r": "' + b"x" * 65536
            ),
            (413, RESET),
        ),
        "a 4 MB string is not echoed": (
            json_post(json.dumps({"dataframe_records": [dict(one, mag_r="x" * 4_000_000)]})),
            400,
        ),
        "dataframe_split: 1 row, 3 index entries": (json_post(_split(3)), 400),
        "dataframe_split: index not a list": (json_post(_split(1).replace("[0]", '"zero"')), 400),
        "a list as a value": (json_post(json.dumps({"dataframe_records": [dict(one, mag_r=[1, 2])]})), 400),
        "an object as a value": (
            json_post(json.dumps({"dataframe_records": [dict(one, mag_r={"a": 1})]})),
            400,
        ),
        "records not a list": (json_post(json.dumps({"dataframe_records": one})), 400),
        "nested params": (json_post(json.dumps({"dataframe_records": [one], "params": {"a": [[1]]}})), 400),
        "malformed JSON": (json_post('{"dataframe_records": [{"mag_r": 1'), 400),
        "not UTF-8": (json_post(b'{"dataframe_records": [{"mag_r": "\xff\xfe"}]}'), 400),
        "a CSV of 20,000 rows": (
            lambda url: post(url, ("a\n" + "1\n" * 20_000).encode(), {"Content-Type": "text/csv"}),
            413,
        ),
        "a body that never finishes": (
            lambda url: raw_exchange(
                url, invocations_head(1000), b'{"dataframe_records": [', pause=body_timeout + 1
            ),
            408,
        ),
    }


def problems(answer: Answer, expected: Expected) -> list[str]:
    """What is wrong with ``answer`` to a malformed request (empty when all is well)."""
    found = []
    if answer.status not in (expected if isinstance(expected, tuple) else (expected,)):
        found.append(f"status {answer.status}, expected {expected}")
    text = answer.body.decode("utf-8", errors="replace")
    if "stack_trace" in text:
        found.append("a stack_trace")
    found.extend(f"{marker!r} in the answer" for marker in INSTALL_MARKERS if marker in text)
    if len(answer.body) > MAX_ANSWER_BYTES:
        found.append(f"an answer of {len(answer.body):,} bytes")
    return found


def still_scores(url: str) -> bool:
    response = requests.post(f"{url}/invocations", json={"dataframe_records": records(1)}, timeout=60)
    return response.status_code == 200 and len(response.json()["predictions"]) == 1


def read_answer(sock: socket.socket) -> Answer:
    """The server's status and body; ``RESET`` when it closed the connection before answering."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        if not chunks:
            return Answer(RESET, b"")
    raw = b"".join(chunks)
    status_line, _, rest = raw.partition(b"\r\n")
    return Answer(int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2])
