"""What the serving guard adds per request, in process (run by hand, not in the tests).

    .venv/bin/python bench/bench_guard.py

Calls an ASGI app that answers at once, with and without ``Guard`` in front, for a
one-record and a 1,000-record ``dataframe_records`` body, alternating the two in each round
(paired), and prints the median CPU time per request of each and the median paired
difference. CPU time (``time.process_time``), not wall time: on a shared, loaded machine the
wall time of a loop mostly measures the other processes.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.machine import one_line  # noqa: E402
from galaxy_morphology.core.settings import ServingSettings  # noqa: E402
from galaxy_morphology.serving.guard import Guard  # noqa: E402
from galaxy_morphology.serving.server import limits_of  # noqa: E402
from tests.serving.adversarial import records  # noqa: E402

ROUNDS, CALLS = 15, 200


async def answer_at_once(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def scope_for(body: bytes) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http", "path": "/invocations", "method": "POST", "headers": headers}


async def per_call(app: Any, body: bytes) -> float:
    scope = scope_for(body)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        return None

    started = time.process_time()
    for _ in range(CALLS):
        await app(scope, receive, send)
    return (time.process_time() - started) / CALLS * 1e6


async def main() -> None:
    guarded = Guard(answer_at_once, limits_of(ServingSettings()))
    print(one_line())
    for n in (1, 1000):
        body = json.dumps({"dataframe_records": (records(4) * 250)[:n]}).encode()
        bare, with_guard = [], []
        for _ in range(ROUNDS):
            bare.append(await per_call(answer_at_once, body))
            with_guard.append(await per_call(guarded, body))
        b, g = statistics.median(bare), statistics.median(with_guard)
        ratios = statistics.median(w - x for w, x in zip(with_guard, bare, strict=True))
        print(
            f"{n} record(s), {len(body):,} bytes: bare {b:.1f} µs, guarded {g:.1f} µs, added {ratios:.1f} µs"
        )


if __name__ == "__main__":
    asyncio.run(main())
