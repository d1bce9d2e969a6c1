"""SIGKILL under load: nothing acknowledged is lost, nothing is counted twice.

Clients behave as the README asks: an invocation is sent once; a conversion is retried
with the same inference_id until it is acknowledged, across server restarts; a user
answered by the fallback (the store busy past its timeout) is not converted. The server
is killed at random moments; at the end the counters are compared with what the
clients were told and with what the event log holds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from abtest.adapters.sqlite import SqliteStore
from tests.embedded.helpers import ENDPOINT, write_config
from tests.embedded.test_serve_process import PAYLOAD, Serving

# Slow: server processes killed and restarted, tens of seconds.
pytestmark = pytest.mark.slow(seconds=6)

ROUNDS = 4
CLIENTS = 4
SEED = 20261130


class Clients:
    """What the clients sent and what they were told, shared by the client threads."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.acked_invocations: set[str] = set()
        # Answered by the endpoint's weights while the store was busy: logged, not counted,
        # and their users cannot convert (a 404), as the README says.
        self.fallback_invocations: set[str] = set()
        self.acked_conversions: set[str] = set()
        self.pending_conversions: dict[str, dict] = {}
        self.sent = 0

    def run(self, url: str, stop: threading.Event, client: int) -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                with self.lock:
                    self.sent += 1
                    user = f"c{client}-{self.sent}"
                    retry = next(iter(self.pending_conversions.values()), None)
                    convert = self.rng.random() < 0.5
                if retry is not None:
                    self._convert(http, url, retry)
                body = {"endpoint_name": ENDPOINT, "user_id": user, "data": PAYLOAD}
                answer = self._post(http, f"{url}/invocation", body)
                if answer is None:
                    continue
                if answer["assignment"] == "fallback":
                    with self.lock:
                        self.fallback_invocations.add(answer["inference_id"])
                    continue
                with self.lock:
                    self.acked_invocations.add(answer["inference_id"])
                if convert:
                    conversion = {
                        "endpoint_name": ENDPOINT,
                        "user_id": user,
                        "inference_id": answer["inference_id"],
                    }
                    with self.lock:
                        self.pending_conversions[answer["inference_id"]] = conversion
                    self._convert(http, url, conversion)

    def _convert(self, http: httpx.Client, url: str, conversion: dict) -> bool:
        if self._post(http, f"{url}/conversion", conversion) is None:
            return False
        with self.lock:
            self.acked_conversions.add(conversion["inference_id"])
            self.pending_conversions.pop(conversion["inference_id"], None)
        return True

    @staticmethod
    def _post(http: httpx.Client, url: str, body: dict) -> dict | None:
        try:
            response = http.post(url, json=body)
        except httpx.HTTPError:
            return None  # the server died under the request: not acknowledged
        return response.json() if response.status_code == 200 else None


def logged_lines(data_dir: Path) -> tuple[list[dict], int]:
    """Events in the log, and how many torn lines (a write cut by the kill) it holds."""
    events, torn = [], 0
    events_dir = data_dir / "events"
    for path in [*events_dir.glob("sealed/*.jsonl"), *events_dir.glob("applied/*.jsonl")]:
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                torn += 1
    return events, torn


def test_sigkill_under_load_loses_no_acknowledged_request_and_counts_none_twice(tmp_path):
    models = {
        "Champion1": "tests.embedded.helpers:constant",
        "Challenger1": "tests.embedded.helpers:echo",
    }
    config = write_config(tmp_path, interval=0.3, variants=models)
    data = tmp_path / "data"
    clients = Clients(SEED)
    pause = random.Random(SEED)
    for _ in range(ROUNDS):
        server = Serving(config, data)
        stop = threading.Event()
        threads = [
            threading.Thread(target=clients.run, args=(server.url, stop, n)) for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(pause.uniform(1.0, 2.5))
        server.process.kill()  # SIGKILL: no flush, no goodbye
        server.process.wait()
        stop.set()
        for thread in threads:
            thread.join()
        server.http.close()

    final = Serving(config, data)
    try:
        with httpx.Client(timeout=30) as http:
            # Retried as the README asks (a 503 of a busy store, a timeout), a bounded time.
            deadline = time.monotonic() + 60
            while clients.pending_conversions and time.monotonic() < deadline:
                for conversion in list(clients.pending_conversions.values()):
                    clients._convert(http, final.url, conversion)
                time.sleep(0.1)
        code, _ = final.stop(signal.SIGTERM)  # seals and aggregates what is buffered
    finally:
        if final.process.poll() is None:  # a failure above: no server left behind
            final.process.kill()
            final.process.wait()
    assert code == 0

    events, torn = logged_lines(data)
    counted_kinds = ("new", "existing")
    invocations = [
        e["inference_id"]
        for e in events
        if e["type"] == "invocation" and e["assignment"] in counted_kinds
    ]
    fallbacks = {
        e["inference_id"]
        for e in events
        if e["type"] == "invocation" and e["assignment"] == "fallback"
    }
    conversions = [e["inference_id"] for e in events if e["type"] == "conversion"]
    store = SqliteStore(data / "abtest.sqlite3")
    try:
        metrics = store.get_endpoint(ENDPOINT).variants
    finally:
        store.close()

    assert len(clients.acked_invocations) > 50, "the load never got going"
    assert clients.pending_conversions == {}
    # Every acknowledged invocation is in the log, once, and counted once.
    assert clients.acked_invocations <= set(invocations)
    assert len(invocations) == len(set(invocations))
    assert clients.fallback_invocations <= fallbacks  # logged too, and not counted
    assert sum(m.counts.invocation_count for m in metrics) == len(invocations)
    # Every acknowledged conversion counts exactly once, however often it was logged.
    assert set(conversions) == clients.acked_conversions
    assert sum(m.counts.conversion_count for m in metrics) == len(clients.acked_conversions)
    # At most the one write each kill cut short in each serving process (with `--workers`,
    # as `test_workers` runs this, a kill of the first process takes every worker with it).
    assert torn <= ROUNDS * int(os.environ.get("ABTEST_WORKERS", "1"))
