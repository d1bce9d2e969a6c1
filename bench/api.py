"""Service-level request throughput and latency (no HTTP), per store adapter.

    python bench/api.py [--requests N] [--stores sqlite,dynamodb]

For each store it times, one request at a time on one thread:
  model only        the trivial model call alone: the baseline every other row is divided by
  invoke, new       a first request of a user: metrics (cached) + 1 read + 1 conditional write
  invoke, returning the same users again: 1 read
  conversion        1 read + 1 conditional write (duplicate check) + 1 event
  handler, returning the Lambda handler path: proxy event -> request path -> service -> response
  stats, 10 variants /stats on a Thompson endpoint with 10 variants past warm-up: the stored
                    allocation and decision, worked out when aggregation changed the counters
  stats, 10 variants, worked out per call  the same answer worked out on every call (how
                    /stats did it before): the quadrature and the decision's figures
  demo model only   the demo's review classifier on a batch of 20 reviews: a small real model
The model inside the service is a constant function, so each row is what abtest adds
around a model. The last column puts that next to the demo model: (row - model only) /
demo model only.
DynamoDB runs on moto in-process: its rows measure moto's request handling as much as ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abtest.adapters.local_models import LocalModelHost
from abtest.adapters.telemetry import CountingTelemetry
from abtest.clock import SystemClock
from abtest.http.resolver import build_resolver, handle
from abtest.ports import ModelResult
from abtest.records import EndpointConfig, VariantConfig, VariantCounts
from abtest.usecases.convert import Conversion, Convert
from abtest.usecases.endpoints import EndpointCache, current_figures, refresh_figures
from abtest.usecases.invoke import Invocation, Invoke
from abtest.usecases.register import Register
from abtest.usecases.stats import Stats

ENDPOINT = "bench-endpoint"
CONFIG = EndpointConfig(
    ENDPOINT, "ThompsonSampling", {}, 0, (VariantConfig("Champion1"), VariantConfig("Challenger1"))
)
TEN = "bench-ten-variants"
CONFIGS = {
    ENDPOINT: CONFIG,
    TEN: EndpointConfig(
        TEN, "ThompsonSampling", {}, 0, tuple(VariantConfig(f"V{i}") for i in range(10))
    ),
}


class ConstantModel:
    def invoke(self, endpoint_name, variant_name, data, content_type, inference_id):
        return ModelResult(variant_name or "Champion1", [0.5])


class Catalog:
    def describe(self, endpoint_name: str) -> EndpointConfig:
        return CONFIGS[endpoint_name]


def timed(n: int, call: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - start)
    return samples


def proxy_event(body: dict) -> dict:
    return {
        "httpMethod": "POST",
        "path": "/invocation",
        "resource": "/invocation",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {"requestId": "bench", "stage": "$default", "path": "/invocation"},
    }


def ports(store: object, events: object) -> SimpleNamespace:
    return SimpleNamespace(
        store=store,
        events=events,
        models=ConstantModel(),
        catalog=Catalog(),
        clock=SystemClock(),
        telemetry=CountingTelemetry(),
        rng=random.Random(),
        assignment_ttl_seconds=90 * 24 * 3600,
        endpoints=EndpointCache(store, ttl_seconds=5.0),
        model_host=LocalModelHost(),  # registration finishes a pending promotion through it
    )


def run(ports: SimpleNamespace, n: int) -> dict[str, list[float]]:
    Register.from_ports(ports).register(ENDPOINT)
    invoke, convert = Invoke.from_ports(ports), Convert.from_ports(ports)
    model = ConstantModel()
    app = build_resolver({"invocation": invoke})
    users = [f"user-{i}" for i in range(n)]
    rows = {
        "model only": timed(n, lambda i: model.invoke(ENDPOINT, "Champion1", "x", "text/csv", "i")),
        "invoke, new": timed(
            n,
            lambda i: invoke(Invocation(endpoint_name=ENDPOINT, user_id=users[i], data="x")),
        ),
        "invoke, returning": timed(
            n,
            lambda i: invoke(Invocation(endpoint_name=ENDPOINT, user_id=users[i], data="x")),
        ),
        "conversion": timed(
            n,
            lambda i: convert(
                Conversion(endpoint_name=ENDPOINT, user_id=users[i], inference_id=f"c{i}")
            ),
        ),
    }
    events = [proxy_event({"endpoint_name": ENDPOINT, "user_id": u, "data": "x"}) for u in users]
    rows["handler, returning"] = timed(n, lambda i: handle(app, events[i], None))
    rows.update(stats_rows(ports, n))
    rows["demo model only"] = demo_model(n)
    return rows


def stats_rows(ports: SimpleNamespace, n: int) -> dict[str, list[float]]:
    """/stats with 10 variants: read from the record, and worked out per call as before."""
    Register.from_ports(ports).register(TEN)
    counts = {f"V{i}": VariantCounts(1000 + 10 * i, 50 + i, 50.0 + i) for i in range(10)}
    ports.store.apply_counts("bench-object", {TEN: counts}, time.time())
    refresh_figures(ports.store, TEN)  # what aggregation does after applying an object
    stats = Stats.from_ports(ports)
    per_call = max(n // 10, 10)  # milliseconds each: fewer calls
    return {
        "stats, 10 variants": timed(n, lambda i: stats(TEN)),
        "stats, 10 variants, worked out per call": timed(
            per_call, lambda i: current_figures(ports.store.get_endpoint(TEN))
        ),
    }


def demo_model(n: int) -> list[float]:
    from abtest.demo.reviews import champion, held_out_reviews

    texts = held_out_reviews(20).texts
    payload = json.dumps({"instances": list(texts), "configuration": {"k": 1}})
    champion(payload)  # trained once per process: not part of a call
    return timed(n, lambda i: champion(payload, "application/json"))


def sqlite_rows(n: int) -> dict[str, list[float]]:
    from abtest.adapters.eventlog import LocalEventLog
    from abtest.adapters.sqlite import SqliteStore

    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "abtest.sqlite3")
        log = LocalEventLog(Path(folder) / "events", buffer_interval_seconds=3600)
        try:
            return run(ports(store, log), n)
        finally:
            log.close()
            store.close()


def dynamodb_rows(n: int) -> dict[str, list[float]]:
    import boto3
    from moto import mock_aws

    from abtest.adapters.dynamodb import DynamoDBStore, create_tables
    from abtest.adapters.firehose import FirehoseSink

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ[name] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_tables(dynamodb, "bench-assignment", "bench-metrics")
        boto3.client("s3").create_bucket(Bucket="bench-events")
        boto3.client("firehose").create_delivery_stream(
            DeliveryStreamName="bench-events",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": "arn:aws:s3:::bench-events",
            },
        )
        store = DynamoDBStore("bench-assignment", "bench-metrics", client=dynamodb)
        events = FirehoseSink("bench-events", client=boto3.client("firehose"))
        return run(ports(store, events), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--stores", default="sqlite,dynamodb")
    args = parser.parse_args()
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {args.requests} requests per row"
    )
    runners = {"sqlite": sqlite_rows, "dynamodb": dynamodb_rows}
    print("| store | row | req/s | p50 us | p99 us | mean / model only | added / demo model |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for store in args.stores.split(","):
        rows = runners[store](args.requests)
        baseline = statistics.fmean(rows["model only"])
        demo = statistics.fmean(rows["demo model only"])
        for name, samples in rows.items():
            ordered = sorted(samples)
            mean = statistics.fmean(samples)
            print(
                f"| {store} | {name} | {1 / mean:,.0f} | {ordered[len(ordered) // 2] * 1e6:,.0f} "
                f"| {ordered[int(len(ordered) * 0.99)] * 1e6:,.0f} | {mean / baseline:,.0f}x "
                f"| {(mean - baseline) / demo:.2f} |"
            )


if __name__ == "__main__":
    main()
