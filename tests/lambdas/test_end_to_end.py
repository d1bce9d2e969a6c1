"""API event -> DynamoDB assignment -> SageMaker variant -> Firehose -> S3 -> metrics -> /stats."""

from __future__ import annotations

import json
import random

import pytest

from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import (
    ENDPOINT,
    create_endpoint,
    s3_event,
    state_change,
    store_unreachable,
)

TAGS = {
    "ab-testing:strategy": "ThompsonSampling",
    "ab-testing:epsilon": "0.1",
    "ab-testing:warmup": "0",
}
# Far apart, so that 120 users decide it beyond doubt (moto's transactions are slow, so
# the test keeps the number of delivered objects small).
RATES = {"Champion1": 0.05, "Challenger1": 0.60}


def deliver(aws, seen: set[str]) -> list[dict]:
    """Gather what arrived since the last delivery into one object, as Firehose's buffer
    does (moto writes an object per call), and hand it to the metrics handler, as the
    bucket notification would. One object, not hundreds: moto copies every table in each
    transaction, so each aggregation costs more than the one before it."""
    bucket = "abtest-events-test"
    listed = aws.s3.list_objects_v2(Bucket=bucket, Prefix="events/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []) if o["Key"] not in seen)
    body = b"".join(aws.s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)
    for key in keys:
        aws.s3.delete_object(Bucket=bucket, Key=key)
    buffered = f"events/buffer-{len(seen):05d}"
    aws.s3.put_object(Bucket=bucket, Key=buffered, Body=body)
    seen.add(buffered)
    return aws.metrics.lambda_handler(s3_event(bucket, [buffered]), Context())["objects"]


# 120 users through moto: the slowest of these.
@pytest.mark.slow
def test_traffic_moves_to_the_better_variant_end_to_end(aws):
    # GIVEN an endpoint in service, registered from its tags
    create_endpoint(TAGS)
    assert aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())[
        "action"
    ] == ("registered")
    rng = random.Random(11)
    seen: set[str] = set()
    shares = []

    # WHEN users are invoked and convert at their variant's rate, in delivered batches
    for batch in range(4):
        picks = []
        for n in range(30):
            user = f"user-{batch}-{n}"
            status, invoked = call(
                aws.invocation,
                api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": user, "data": "x"}),
            )
            assert status == 200, invoked
            picks.append(invoked["target_variant"])
            if rng.random() < RATES[invoked["target_variant"]]:
                status, _ = call(aws.conversion, api_event("/conversion", invoked))
                assert status == 200
        shares.append(picks.count("Challenger1") / len(picks))
        deliver(aws, seen)

    # THEN /stats has every event counted once and the allocation favours the better variant
    status, stats = call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))
    assert status == 200
    counts = {m["variant_name"]: m for m in stats["variant_metrics"]}
    assert sum(m["invocation_count"] for m in counts.values()) == 120
    assert stats["allocation"]["Challenger1"] > 0.9
    assert shares[-1] > shares[0]
    # Every invocation carried its TargetVariant and InferenceId to SageMaker.
    assert all("TargetVariant" in c and "InferenceId" in c for c in aws.runtime.calls)


def test_counts_in_stats_equal_the_events_in_s3(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    for n in range(30):
        _, invoked = call(
            aws.invocation,
            api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": f"u{n}", "data": "x"}),
        )
        if n % 3 == 0:
            call(aws.conversion, api_event("/conversion", {**invoked, "reward": 0.5}))

    objects = deliver(aws, set())
    events = []
    for key in (o["object_key"] for o in objects):
        body = aws.s3.get_object(Bucket="abtest-events-test", Key=key)["Body"].read()
        events += [json.loads(line) for line in body.splitlines() if line.strip()]

    _, stats = call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))
    for metric in stats["variant_metrics"]:
        mine = [e for e in events if e["variant_name"] == metric["variant_name"]]
        assert metric["invocation_count"] == sum(e["type"] == "invocation" for e in mine)
        assert metric["conversion_count"] == sum(e["type"] == "conversion" for e in mine)
        assert metric["reward_sum"] == sum(
            e.get("reward", 0) for e in mine if e["type"] == "conversion"
        )
    assert len(events) == 40


def test_redelivered_s3_object_is_not_double_counted(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    call(
        aws.invocation,
        api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": "u", "data": "x"}),
    )
    [first] = deliver(aws, set())

    again = aws.metrics.lambda_handler(
        s3_event("abtest-events-test", [first["object_key"]]), Context()
    )

    assert first["applied"] is True
    assert again["objects"][0]["applied"] is False
    _, stats = call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))
    assert sum(m["invocation_count"] for m in stats["variant_metrics"]) == 1


def test_malformed_lines_go_to_the_rejected_prefix(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    good = {"type": "invocation", "endpoint_name": ENDPOINT, "variant_name": "Champion1"}
    aws.s3.put_object(
        Bucket="abtest-events-test",
        Key="events/2026/11/29/mixed+1.jsonl",
        Body=(json.dumps(good) + "\n{broken\n" + json.dumps(good) + "\n").encode(),
    )

    [result] = aws.metrics.lambda_handler(
        s3_event("abtest-events-test", ["events/2026/11/29/mixed+1.jsonl"]), Context()
    )["objects"]

    assert (result["applied"], result["events"], result["rejected"]) == (True, 2, 1)
    kept = aws.s3.get_object(
        Bucket="abtest-events-test", Key="rejected/events/2026/11/29/mixed+1.jsonl.jsonl"
    )["Body"].read()
    assert json.loads(kept.splitlines()[0])["line_number"] == 2


def test_model_error_is_502_naming_the_variant_and_counted(aws, capsys):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    aws.runtime.failing = {"Champion1", "Challenger1"}
    capsys.readouterr()

    status, body = call(
        aws.invocation,
        api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": "u", "data": "x"}),
    )

    assert status == 502
    assert body["error"] == "model_error"
    assert "Champion1" in body["message"] or "Challenger1" in body["message"]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [error] = [m for m in emf if "ModelErrors" in m]
    assert error["endpoint_name"] == ENDPOINT and error["ModelErrors"] == [1.0]
    assert error["variant_name"] in body["message"]


def test_failed_and_served_calls_are_logged_with_latency_and_outcome_and_counted(aws):
    """The same invocation event on AWS: a failed call is logged (outcome error), and the
    metrics function counts it into the variant's error count and latency buckets."""
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    aws.runtime.failing = {"Challenger1"}
    statuses = []
    for n in range(6):
        body = {"endpoint_name": ENDPOINT, "user_id": f"u{n}", "data": "x"}
        body["endpoint_variant"] = "Challenger1" if n % 2 else "Champion1"
        statuses.append(call(aws.invocation, api_event("/invocation", body))[0])
    assert statuses == [200, 502] * 3

    [delivered] = deliver(aws, set())
    body = aws.s3.get_object(Bucket="abtest-events-test", Key=delivered["object_key"])["Body"]
    events = [json.loads(line) for line in body.read().splitlines() if line.strip()]
    # (in any order: moto writes an object per record, and their keys sort by time)
    expected = [("Challenger1", "error")] * 3 + [("Champion1", "ok")] * 3
    assert sorted((e["variant_name"], e["outcome"]) for e in events) == expected
    assert all(e["latency_ms"] >= 0 for e in events)
    _, stats = call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))
    shown = {m["variant_name"]: m for m in stats["variant_metrics"]}
    assert (shown["Challenger1"]["model_calls"], shown["Challenger1"]["model_errors"]) == (3, 3)
    assert (shown["Champion1"]["error_rate"], shown["Challenger1"]["error_rate"]) == (0.0, 1.0)
    assert shown["Champion1"]["latency_ms"]["p99"] is not None


def test_store_unreachable_falls_back_without_target_variant(aws, monkeypatch, capsys):
    """A function that never read the endpoint knows nothing of it: SageMaker's weights route."""
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    store_unreachable(aws, monkeypatch)
    capsys.readouterr()

    status, body = call(
        aws.invocation,
        api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": "u", "data": "x"}),
    )

    assert status == 200
    assert body["assignment"] == "fallback" and body["target_variant"] is None
    assert "TargetVariant" not in aws.runtime.calls[-1]
    # The fallback is counted as a CloudWatch metric (EMF), charted on the dashboard.
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [fallback] = [m for m in emf if "Fallbacks" in m]
    assert (fallback["endpoint_name"], fallback["Fallbacks"]) == (ENDPOINT, [1.0])


def test_metrics_handler_publishes_per_variant_counts_once(aws, capsys):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    _, invoked = call(
        aws.invocation,
        api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": "u", "data": "x"}),
    )
    capsys.readouterr()

    [first] = deliver(aws, set())
    published = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    aws.metrics.lambda_handler(s3_event("abtest-events-test", [first["object_key"]]), Context())
    again = [line for line in capsys.readouterr().out.splitlines() if '"Invocations"' in line]

    invocations = [m for m in published if "Invocations" in m]
    assert [(m["variant_name"], m["Invocations"]) for m in invocations] == [
        (invoked["target_variant"], [1.0])
    ]
    assert again == []


def test_history_route_reads_what_each_delivered_object_left(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    seen: set[str] = set()
    for batch in range(2):
        for n in range(5):
            body = {"endpoint_name": ENDPOINT, "user_id": f"u{batch}-{n}", "data": "x"}
            call(aws.invocation, api_event("/invocation", body))
        deliver(aws, seen)
    # A redelivery of the first object leaves no second snapshot.
    aws.metrics.lambda_handler(s3_event("abtest-events-test", [min(seen)]), Context())

    status, history = call(aws.history, api_event("/history", {"endpoint_name": ENDPOINT}))
    _, stats = call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))

    assert status == 200, history
    assert [s["seq"] for s in history["snapshots"]] == [1, 2]
    totals = [sum(v["invocation_count"] for v in s["variants"]) for s in history["snapshots"]]
    assert totals == [5, 10]
    assert {v["variant_name"]: v["allocation"] for v in history["snapshots"][-1]["variants"]} == (
        stats["allocation"]
    )
    status, unknown = call(aws.history, api_event("/history", {"endpoint_name": "abtest-nope"}))
    assert status == 404 and "endpoint_name" in unknown["message"]
