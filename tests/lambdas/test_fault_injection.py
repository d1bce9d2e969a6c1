"""The AWS path under injected faults: nothing acknowledged is lost, nothing counted twice.

Under moto, the handlers' own clients get faults injected: throttling before a call,
a lost response after one that succeeded (DynamoDB writes, where botocore would retry
into a failed condition; Firehose, which took the records; the queue, which took the
messages), Firehose and its queue refusing. Clients behave as the README asks (retry a
conversion with its inference_id until it is acknowledged); the operator runs the redrive
once those faults are over. Then aggregation meets faults of its own (transactions
refused, claims refused or their answers lost) and is retried until it succeeds, as the
bucket notification does; and S3 delivers every fourth object once more.

Each kind of fault is injected at least FLOOR times, asserted: the rates are set so that
80 users meet every kind (each object costs moto a copy of the metrics table per
transaction, so objects, not requests, make the test's time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from collections import Counter

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from abtest.adapters.redrive import redrive_events
from lambdas.wiring import request_budget_seconds
from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, create_endpoint, s3_event, state_change

# Slow: a few hundred requests and aggregations through moto, some 10 s on a quiet machine
# (22 s before the tests' moto kept its serializer's member keys, tests/moto_serializer.py).
pytestmark = pytest.mark.slow(seconds=10)

USERS = 80
CONVERTING = 0.9  # the share of users who convert
SEED = 11
BUCKET = "abtest-events-test"
FLOOR = 3  # times each kind of fault is injected, at least


class Faults:
    """Decides faults from a hash of the operation and how often it was called: the same
    faults every run."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.kinds: set[str] = set()  # every kind of fault some wrapped call can meet
        self.clock = 0.0  # seconds that stalls and back-offs took, as the clients saw them
        self._lock = threading.Lock()  # aggregation claims from a thread pool

    def monotonic(self) -> float:
        return self.clock

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def _roll(self, name: str) -> float:
        """From the call's rank among `name`'s calls, not its arguments (they hold fresh
        inference ids and timestamps): the same faults every run (but for the order of
        claims made in parallel)."""
        with self._lock:
            self.calls[name] += 1
            key = f"{self.seed}:{name}:{self.calls[name]}"
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def wrap(
        self,
        monkeypatch,
        client,
        operation: str,
        *,
        where: str = "",
        refuse=0.0,
        stall=0.0,
        lost=0.0,
        code="ThrottlingException",
    ):
        """`refuse`: an error answer, nothing done. `stall`: no answer until the client
        gives up, after its every timeout and retry (half the time the request got there
        and was done). `lost`: done, and the answer lost. Undone with `monkeypatch`."""
        real = getattr(client, operation)
        name = f"{where}{client.meta.service_model.service_name}.{operation}"
        for kind, rate in (("refused", refuse), ("stalled", stall), ("response lost", lost)):
            if rate:
                self.kinds.add(f"{name} {kind}")
        config = client.meta.config
        gives_up_after = (config.connect_timeout + config.read_timeout) * config.retries[
            "total_max_attempts"
        ]

        def faulty(**kwargs):
            roll = self._roll(name)
            if roll < refuse:
                self._count(f"{name} refused")
                raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)
            if roll < refuse + stall:
                self._count(f"{name} stalled")
                with self._lock:
                    self.clock += gives_up_after
                if roll < refuse + stall / 2:
                    real(**kwargs)
                raise ReadTimeoutError(endpoint_url="https://injected")
            result = real(**kwargs)
            if roll > 1 - lost:
                self._count(f"{name} response lost")
                raise ReadTimeoutError(endpoint_url="https://injected")
            return result

        monkeypatch.setattr(client, operation, faulty, raising=False)


def inject_into_requests(aws, faults: Faults, monkeypatch) -> None:
    """Faults on the invocation and conversion functions' clients."""
    for handler in (aws.invocation, aws.conversion):
        store, sink = handler.use_case.store.client, handler.use_case.events
        # Writes and the queue get few calls (80 users: about 65 puts, 60 updates, 36
        # batches to the queue), so their rates are high enough for FLOOR of each kind.
        faults.wrap(monkeypatch, store, "get_item", refuse=0.06, stall=0.03)
        faults.wrap(monkeypatch, store, "put_item", refuse=0.1, stall=0.1, lost=0.15)
        faults.wrap(monkeypatch, store, "update_item", refuse=0.1, stall=0.15, lost=0.2)
        faults.wrap(
            monkeypatch,
            sink.client,
            "put_record_batch",
            refuse=0.2,
            stall=0.1,
            lost=0.1,
            code="ServiceUnavailableException",
        )
        faults.wrap(
            monkeypatch,
            sink.sqs_client,
            "send_message_batch",
            refuse=0.15,
            stall=0.15,
            lost=0.2,
            code="ThrottlingException",
        )
        monkeypatch.setattr(sink, "_sleep", faults.sleep)
        monkeypatch.setattr(sink, "_monotonic", faults.monotonic)


def inject_into_aggregation(aws, faults: Faults, monkeypatch) -> None:
    """Faults on the metrics function's store: its claims (updates) and its transactions."""
    store = aws.metrics.aggregate.store.client  # the history's client too
    faults.wrap(monkeypatch, store, "update_item", where="metrics ", refuse=0.04, lost=0.04)
    faults.wrap(monkeypatch, store, "transact_write_items", where="metrics ", refuse=0.05)


def event_keys(aws) -> list[str]:
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="events/").get("Contents", [])
    return sorted(o["Key"] for o in listed)


def aggregate_until_done(aws, key: str) -> None:
    """The object to the metrics function until it succeeds, as S3 and Lambda retry."""
    for _attempt in range(50):
        try:
            aws.metrics.lambda_handler(s3_event(BUCKET, [key]), Context())
            return
        except Exception:  # the notification is retried
            continue
    raise AssertionError(f"{key} never aggregated")


def logged_events(aws) -> list[dict]:
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="events/").get("Contents", [])
    events = []
    for item in listed:
        body = aws.s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        events += [json.loads(line) for line in body.splitlines() if line.strip()]
    return events


def test_injected_faults_lose_no_acknowledged_request_and_count_none_twice(
    aws, monkeypatch, caplog
):
    create_endpoint({"ab-testing:strategy": "ThompsonSampling"})
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    faults = Faults(SEED)
    rng = random.Random(SEED)
    took: list[float] = []  # what stalls and back-offs added to each request

    def timed(handler, event):
        before = faults.clock
        answer = call(handler, event)
        took.append(faults.clock - before)
        return answer

    acked_invocations: dict[str, str] = {}  # inference_id -> assignment kind
    acked_conversions: set[str] = set()

    # The handlers' clients outlive the test: each context undoes its faults.
    with caplog.at_level(logging.ERROR, logger="abtest"), pytest.MonkeyPatch.context() as faulty:
        inject_into_requests(aws, faults, faulty)
        for n in range(USERS):
            user = f"user-{n}"
            body = {"endpoint_name": ENDPOINT, "user_id": user, "data": "x"}
            status, invoked = timed(aws.invocation, api_event("/invocation", body))
            if status != 200:
                continue
            acked_invocations[invoked["inference_id"]] = invoked["assignment"]
            if rng.random() < CONVERTING:
                conversion = {**body, "inference_id": invoked["inference_id"]}
                for _retry in range(30):
                    status, _ = timed(aws.conversion, api_event("/conversion", conversion))
                    if status in (200, 404):  # 404: a fallback user nobody assigned
                        break
                if status == 200:
                    acked_conversions.add(invoked["inference_id"])
                    # ... and the client, not sure it was heard, sends it once more
                    timed(aws.conversion, api_event("/conversion", conversion))

    only_in_the_log = {
        json.loads(r.getMessage().split("): ", 1)[1])["inference_id"]
        for r in caplog.records
        if r.getMessage().startswith("event not delivered")
    }
    # The operator's redrive, once the requests' faults are over; then aggregation's own.
    sink = aws.invocation.use_case.events
    redriven = redrive_events(sink.sqs_client, aws.s3, aws.queue, BUCKET, settle_seconds=0)
    keys = event_keys(aws)
    with pytest.MonkeyPatch.context() as faulty:
        inject_into_aggregation(aws, faults, faulty)
        for key in keys:
            aggregate_until_done(aws, key)
    for key in keys[::4]:  # delivered again: every fourth, each a copy of the table in moto
        aggregate_until_done(aws, key)

    events = logged_events(aws)
    invocations = [
        e["inference_id"]
        for e in events
        if e["type"] == "invocation" and e["assignment"] in ("new", "existing")
    ]
    conversions = {e["inference_id"] for e in events if e["type"] == "conversion"}
    status, stats = call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))
    counted = stats["variant_metrics"]

    assert sum(faults.injected.values()) > 50, faults.injected
    rare = {kind: faults.injected[kind] for kind in faults.kinds if faults.injected[kind] < FLOOR}
    assert not rare, f"kinds of fault met fewer than {FLOOR} times (raise their rate): {rare}"
    assert faults.injected["dynamodb.get_item stalled"] > 5, faults.injected
    assert faults.injected["firehose.put_record_batch stalled"] > 5, faults.injected
    # Stalls end inside the function's timeout: the client's answer is never cut off.
    assert 0 < max(took) <= request_budget_seconds(), sorted(took)[-5:]
    assert faults.injected["firehose.put_record_batch response lost"] > 5, faults.injected
    assert redriven.already_logged > 5 and redriven.sent > 0, redriven
    assert len(acked_conversions) > 50
    # Conversions: every acknowledged one counted exactly once, however often it was sent.
    assert conversions == acked_conversions
    assert sum(m["conversion_count"] for m in counted) == len(acked_conversions)
    # Invocations: each logged once, counted once; acknowledged ones are logged somewhere.
    assert len(invocations) == len(set(invocations))
    assert sum(m["invocation_count"] for m in counted) == len(invocations)
    acked = {i for i, kind in acked_invocations.items() if kind in ("new", "existing")}
    assert acked <= set(invocations) | only_in_the_log
