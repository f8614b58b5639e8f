"""Adversarial pass over the scoring server (run by hand, not in the tests; loopback only).

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db .venv/bin/python bench/adversarial_serving.py \\
        --clients 8 --seconds 60

Starts ``galaxy serve``'s server (the settings' limits) for the champion on a free loopback
port, then:

1. sends every malformed or hostile request of ``tests/serving/adversarial.py`` and of the
   refusal table of ``tests/serving/test_server.py``, one after the other, checking each gets
   its 4xx without ``stack_trace`` or install paths and that a valid request still scores;
2. runs ``--clients`` threads for ``--seconds``, each posting valid one-record requests and,
   every ``--hostile-every`` requests, one hostile request; every valid request must get 200
   with one prediction equal to the reference answer, every hostile one its 4xx;
3. checks the server process is still the one started, and prints the figures as markdown.

Every loop is bounded by the case list or the deadline.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.machine import one_line  # noqa: E402
from galaxy_morphology.core.settings import load_settings  # noqa: E402
from galaxy_morphology.serving.server import limits_of, start_server  # noqa: E402
from tests.serving.adversarial import (  # noqa: E402
    Answer,
    cases,
    json_post,
    post,
    problems,
    records,
    still_scores,
)
from tests.serving.test_server import BAD_REQUESTS  # noqa: E402


def every_case(max_request_bytes: int, body_timeout: float) -> dict[str, tuple]:
    found = dict(cases(max_request_bytes, body_timeout))
    for name, (body, content_type, _) in BAD_REQUESTS.items():
        data = body.encode() if isinstance(body, str) else body
        send = json_post(data) if content_type == "application/json" else _typed(data, content_type)
        found[f"refusal table: {name}"] = (send, 415 if content_type == "text/plain" else 400)
    return found


def _typed(data: bytes, content_type: str) -> Callable[[str], Answer]:
    return lambda url: post(url, data, {"Content-Type": content_type})


def one_by_one(url: str, found: dict[str, tuple]) -> tuple[int, list[str]]:
    failures = []
    for name, (send, expected) in found.items():
        wrong = problems(send(url), expected)
        if not still_scores(url):
            wrong.append("the server stopped scoring afterwards")
        if wrong:
            failures.append(f"{name}: {'; '.join(wrong)}")
    return len(found), failures


def under_load(url: str, clients: int, seconds: float, hostile_every: int, hostile: list[tuple]) -> Counter:
    body = json.dumps({"dataframe_records": records(1)})
    reference = requests.post(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=60
    ).json()
    counts: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        session, sent = requests.Session(), 0
        while time.monotonic() < deadline:
            sent += 1
            if sent % hostile_every == 0:
                send, expected = hostile[(number + sent) % len(hostile)]
                try:
                    outcome = "hostile refused" if not problems(send(url), expected) else "hostile WRONG"
                except OSError:
                    outcome = "hostile cut off (connection error)"
            else:
                try:
                    response = session.post(
                        f"{url}/invocations",
                        data=body,
                        headers={"Content-Type": "application/json"},
                        timeout=60,
                    )
                    right = response.status_code == 200 and response.json() == reference
                    outcome = "valid answered" if right else "valid WRONG"
                except requests.RequestException:
                    outcome = "valid LOST"
            with lock:
                counts[outcome] += 1

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-uri", default="models:/galaxy-morphology@champion")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--hostile-every", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    settings = load_settings()
    limits = limits_of(settings.serving)
    found = every_case(limits.max_request_bytes, limits.body_timeout_seconds)
    # under load: the quick hostile requests (the slow-body one would only idle a client)
    quick = [case for name, case in found.items() if "never finishes" not in name]
    with start_server(
        args.model_uri, settings.tracking_uri(), workers=args.workers, limits=limits, timeout=300
    ) as server:
        pid = server.process.pid
        tried, failures = one_by_one(server.url, found)
        counts = under_load(server.url, args.clients, args.seconds, args.hostile_every, quick)
        alive = server.alive() and server.process.pid == pid and still_scores(server.url)
    print(f"## Adversarial serving pass ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(one_line())
    print(f"\n- limits: {limits}")
    print(f"- malformed or hostile inputs tried one by one: {tried}; wrong answers: {len(failures)}")
    for failure in failures:
        print(f"  - {failure}")
    print(
        f"- {args.clients} clients for {args.seconds:g} s ({args.workers} worker(s)), one hostile request in "
        f"{args.hostile_every}: " + ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    )
    print(f"- the same server process answered throughout and still scores: {alive}")


if __name__ == "__main__":
    main()
