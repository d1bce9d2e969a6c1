from __future__ import annotations

import json
import random

import pytest

from abtest.http.bodies import ConversionRequest, InvocationRequest, StatsRequest
from tests.service.doubles import ENDPOINT


def simulate(service, rng: random.Random, users: int, rates: dict[str, float]) -> None:
    for n in range(users):
        invoked = service.invoke(
            InvocationRequest(endpoint_name=ENDPOINT, user_id=f"user-{n}", data="x")
        )
        if rng.random() < rates[invoked.target_variant]:
            service.convert(
                ConversionRequest(
                    endpoint_name=ENDPOINT, user_id=f"user-{n}", inference_id=invoked.inference_id
                )
            )


def test_stats_counts_equal_the_delivered_events(service, log):
    simulate(service, random.Random(1), 200, {"Champion1": 0.2, "Challenger1": 0.6})
    key = log.deliver()

    result = service.aggregate(log, key)
    stats = service.stats(StatsRequest(endpoint_name=ENDPOINT))

    assert result.applied and result.rejected == []
    by_variant = {m.variant_name: m for m in stats.variant_metrics}
    for variant in ("Champion1", "Challenger1"):
        invocations = [
            e for e in log.events if e["type"] == "invocation" and e["variant_name"] == variant
        ]
        conversions = [
            e for e in log.events if e["type"] == "conversion" and e["variant_name"] == variant
        ]
        assert by_variant[variant].invocation_count == len(invocations)
        assert by_variant[variant].conversion_count == len(conversions)
        assert by_variant[variant].reward_sum == pytest.approx(len(conversions))
    assert sum(stats.allocation.values()) == pytest.approx(1.0)


def test_redelivered_object_counts_once(service, log):
    simulate(service, random.Random(2), 30, {"Champion1": 0.5, "Challenger1": 0.5})
    key = log.deliver()

    first, second = service.aggregate(log, key), service.aggregate(log, key)

    assert (first.applied, second.applied) == (True, False)
    stats = service.stats(StatsRequest(endpoint_name=ENDPOINT))
    assert sum(m.invocation_count for m in stats.variant_metrics) == 30


def test_bad_lines_are_kept_aside_and_never_fail_the_batch(service, log):
    good = {"type": "invocation", "endpoint_name": ENDPOINT, "variant_name": "Champion1"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "endpoint_name": "unknown-endpoint"}),
        json.dumps({**good, "variant_name": "Ghost"}),
        json.dumps({**good, "type": "conversion", "reward": 7}),
        json.dumps({**good, "type": "click"}),
        json.dumps([1, 2]),
        "",
        json.dumps(good),
    ]
    log.objects["mixed.jsonl"] = "\n".join(lines).encode()

    result = service.aggregate(log, "mixed.jsonl")

    assert result.applied and result.events == 2
    reasons = [r.reason for r in log.rejected["mixed.jsonl"]]
    assert [r.line_number for r in log.rejected["mixed.jsonl"]] == [2, 3, 4, 5, 6, 7]
    assert reasons[0].startswith("not JSON")
    assert "unknown endpoint" in reasons[1] and "unknown variant" in reasons[2]
    assert "reward" in reasons[3] and "unknown event type" in reasons[4]
    stats = service.stats(StatsRequest(endpoint_name=ENDPOINT))
    assert {m.variant_name: m.invocation_count for m in stats.variant_metrics} == {
        "Champion1": 2,
        "Challenger1": 0,
    }


def test_manual_and_fallback_invocations_are_logged_but_not_counted(service, log):
    service.invoke(
        InvocationRequest(
            endpoint_name=ENDPOINT, user_id="m", data="x", endpoint_variant="Champion1"
        )
    )
    key = log.deliver()

    result = service.aggregate(log, key)

    assert result.events == 1 and result.counts == {}


def test_allocation_moves_toward_the_better_variant(service, log):
    """After feedback, Thompson sends most new users to the variant that converts 3x better."""
    rng = random.Random(3)
    for batch in range(6):
        simulate_from = batch * 100
        for n in range(simulate_from, simulate_from + 100):
            invoked = service.invoke(
                InvocationRequest(endpoint_name=ENDPOINT, user_id=f"user-{n}", data="x")
            )
            rate = {"Champion1": 0.1, "Challenger1": 0.3}[invoked.target_variant]
            if rng.random() < rate:
                service.convert(ConversionRequest(endpoint_name=ENDPOINT, user_id=f"user-{n}"))
        service.aggregate(log, log.deliver())

    stats = service.stats(StatsRequest(endpoint_name=ENDPOINT))

    assert stats.allocation["Challenger1"] > 0.9
    assert stats.decision["winner"] in (None, "Challenger1")


def test_stats_of_unknown_endpoint_is_404(service):
    from abtest.errors import NotFoundError

    with pytest.raises(NotFoundError):
        service.stats(StatsRequest(endpoint_name="nope"))
