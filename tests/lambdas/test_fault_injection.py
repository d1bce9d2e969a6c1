"""The AWS path under injected faults: nothing acknowledged is lost, nothing counted twice.

Under moto, the handlers' own clients get faults injected: throttling before a call,
a lost response after one that succeeded (DynamoDB writes, where botocore would retry
into a failed condition; Firehose, which took the records; the queue, which took the
messages), Firehose and its queue refusing. Clients behave as the README asks (retry a
conversion with its inference_id until it is acknowledged); S3 redelivers every object,
aggregation that fails is retried, as the bucket notification does, and the operator
runs the redrive once the faults are over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from abtest.adapters.redrive import redrive_events
from lambdas.wiring import request_budget_seconds
from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, create_endpoint, s3_event, state_change

# Slow: hundreds of requests through moto, about half a minute.
pytestmark = pytest.mark.slow(seconds=30)

USERS = 200
SEED = 11
BUCKET = "abtest-events-test"


class Faults:
    """Decides faults from a hash of the call and how often it was made: same run, same faults."""

    def __init__(self, seed: int, monkeypatch) -> None:
        self.seed = seed
        self.monkeypatch = monkeypatch  # undone, the clients are whole again
        self.calls: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.clock = 0.0  # seconds that stalls and back-offs took, as the clients saw them

    def monotonic(self) -> float:
        return self.clock

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def _roll(self, name: str, kwargs: dict) -> float:
        key = f"{self.seed}:{name}:{json.dumps(kwargs, sort_keys=True, default=str)}"
        self.calls[key] += 1
        digest = hashlib.sha256(f"{key}:{self.calls[key]}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def wrap(
        self,
        client,
        operation: str,
        *,
        refuse=0.0,
        stall=0.0,
        lost=0.0,
        code="ThrottlingException",
    ):
        """`refuse`: an error answer, nothing done. `stall`: no answer until the client
        gives up, after its every timeout and retry (half the time the request got there
        and was done). `lost`: done, and the answer lost."""
        real = getattr(client, operation)
        name = f"{client.meta.service_model.service_name}.{operation}"
        config = client.meta.config
        gives_up_after = (config.connect_timeout + config.read_timeout) * config.retries[
            "total_max_attempts"
        ]

        def faulty(**kwargs):
            roll = self._roll(name, kwargs)
            if roll < refuse:
                self.injected[f"{name} refused"] += 1
                raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)
            if roll < refuse + stall:
                self.injected[f"{name} stalled"] += 1
                self.clock += gives_up_after
                if roll < refuse + stall / 2:
                    real(**kwargs)
                raise ReadTimeoutError(endpoint_url="https://injected")
            result = real(**kwargs)
            if roll > 1 - lost:
                self.injected[f"{name} response lost"] += 1
                raise ReadTimeoutError(endpoint_url="https://injected")
            return result

        self.monkeypatch.setattr(client, operation, faulty, raising=False)


def inject(aws, faults: Faults, monkeypatch) -> None:
    for handler in (aws.invocation, aws.conversion):
        store, sink = handler.use_case.store.client, handler.use_case.events
        faults.wrap(store, "get_item", refuse=0.06, stall=0.03)
        faults.wrap(store, "put_item", refuse=0.04, stall=0.03, lost=0.1)
        faults.wrap(store, "update_item", refuse=0.04, stall=0.03, lost=0.15)
        faults.wrap(
            sink.client,
            "put_record_batch",
            refuse=0.15,
            stall=0.05,
            lost=0.1,
            code="ServiceUnavailableException",
        )
        faults.wrap(
            sink.sqs_client,
            "send_message_batch",
            refuse=0.15,
            stall=0.05,
            lost=0.1,
            code="ThrottlingException",
        )
        monkeypatch.setattr(sink, "_sleep", faults.sleep)
        monkeypatch.setattr(sink, "_monotonic", faults.monotonic)
    metrics_store = aws.metrics.aggregate.store.client
    faults.wrap(metrics_store, "update_item", refuse=0.02, lost=0.02)
    faults.wrap(metrics_store, "transact_write_items", refuse=0.1)


def aggregate_everything(aws) -> None:
    """Every object to the metrics function until it succeeds, then every fourth again.

    Not every object twice: moto copies every table in each transaction, so the cost of
    a redelivery grows with everything written before it.
    """
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="events/").get("Contents", [])
    keys = sorted(o["Key"] for o in listed)
    for delivery in (keys, keys[::4]):
        for key in delivery:
            for _attempt in range(50):
                try:
                    aws.metrics.lambda_handler(s3_event(BUCKET, [key]), Context())
                    break
                except Exception:  # the notification is retried, as S3 and Lambda do
                    continue
            else:
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
    faults = Faults(SEED, monkeypatch)
    inject(aws, faults, monkeypatch)
    rng = random.Random(SEED)
    took: list[float] = []  # what stalls and back-offs added to each request

    def timed(handler, event):
        before = faults.clock
        answer = call(handler, event)
        took.append(faults.clock - before)
        return answer

    acked_invocations: dict[str, str] = {}  # inference_id -> assignment kind
    acked_conversions: set[str] = set()

    with caplog.at_level(logging.ERROR, logger="abtest"):
        for n in range(USERS):
            user = f"user-{n}"
            body = {"endpoint_name": ENDPOINT, "user_id": user, "data": "x"}
            status, invoked = timed(aws.invocation, api_event("/invocation", body))
            if status != 200:
                continue
            acked_invocations[invoked["inference_id"]] = invoked["assignment"]
            if rng.random() < 0.4:
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
    monkeypatch.undo()  # the operator's redrive and the final aggregation run clean
    sink = aws.invocation.use_case.events
    redriven = redrive_events(sink.sqs_client, aws.s3, aws.queue, BUCKET, settle_seconds=0)
    aggregate_everything(aws)

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
