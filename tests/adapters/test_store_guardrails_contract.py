"""The Store contract, continued: the guardrail counters and demotion, on SQLite and DynamoDB.

Demotion is worked out from the stored counters and the stored lifecycle (its
reinstatements), so both stores must keep every latency bucket and error count, merge them
across objects by addition, and keep a reinstatement's baseline through the compare-and-set.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from abtest import guardrails
from abtest.adapters.dynamodb import MAX_INCREMENTS_PER_UPDATE
from abtest.config_types import ExperimentSettings
from abtest.lifecycle import Action, AuditEntry, Lifecycle
from abtest.records import COUNTERS, LATENCY_COUNTERS, VariantCounts
from abtest.usecases.endpoints import paused_allocation, refresh_figures
from tests.adapters.test_store_contract import ENDPOINT, NOW, config

GUARDED = ExperimentSettings(max_error_rate=0.05, max_latency_p99_ms=500)


def calls(n: int, errors: int = 0, bucket: str = "latency_le_5ms", **more: int) -> VariantCounts:
    """n calls in `bucket`, `errors` of them failed, users and invocations alike."""
    return VariantCounts(invocation_count=n, users=n, model_errors=errors, **{bucket: n}, **more)


def register(store) -> None:
    store.register_endpoint(replace(config(("A", 1.0), ("B", 1.0)), settings=GUARDED), NOW)


def test_guardrail_counters_merge_across_objects(store):
    register(store)
    store.apply_counts("o1", {ENDPOINT: {"B": calls(50, 4, latency_le_1000ms=3)}}, NOW)
    store.apply_counts("o2", {ENDPOINT: {"B": calls(50, 6)}}, NOW)

    b = store.get_endpoint(ENDPOINT).variants[1].counts
    assert (b.model_errors, b.latency_le_5ms, b.latency_le_1000ms) == (10, 100, 3)
    assert guardrails.model_calls(b) == 103
    assert guardrails.latency_quantile(b, 0.99) == 1000.0


def test_a_variant_failing_20_percent_is_demoted_then_reinstated_then_demoted_again(store):
    register(store)
    # 40 calls, 8 failed: not yet evidence at 0.1 %; 50 more with 10 failed: it is.
    store.apply_counts("o1", {ENDPOINT: {"A": calls(40), "B": calls(40, 8)}}, NOW)
    assert refresh_figures(store, ENDPOINT).demoted == {}
    store.apply_counts("o2", {ENDPOINT: {"A": calls(50), "B": calls(50, 10)}}, NOW)

    figures = refresh_figures(store, ENDPOINT)
    assert list(figures.demoted) == ["B"] and "max_error_rate 0.05" in figures.demoted["B"]
    assert figures.allocation["B"] == 0.0 and figures.allocation["A"] == 1.0
    assert figures.decision.get("winner") != "B"
    assert store.get_endpoint(ENDPOINT).fresh_figures.demoted == figures.demoted  # stored

    endpoint = store.get_endpoint(ENDPOINT)
    kept = guardrails.baseline(endpoint.variants[1].counts)
    reinstated = endpoint.lifecycle.reinstating(ENDPOINT, "B", kept)
    entry = AuditEntry(NOW, "alice", Action.REINSTATE, "fixed", {"variant": "B"})
    assert store.change_lifecycle(ENDPOINT, endpoint.lifecycle, reinstated, entry)
    assert store.get_endpoint(ENDPOINT).lifecycle.reinstated == {"B": kept}
    assert refresh_figures(store, ENDPOINT).demoted == {}  # the old failures count no more

    store.apply_counts("o3", {ENDPOINT: {"B": calls(100, 20)}}, NOW)
    assert list(refresh_figures(store, ENDPOINT).demoted) == ["B"]


def test_one_slow_call_does_not_demote_but_slow_calls_with_evidence_do(store):
    register(store)
    store.apply_counts("o1", {ENDPOINT: {"B": calls(1, bucket="latency_le_5000ms")}}, NOW)
    store.apply_counts("o2", {ENDPOINT: {"B": calls(150)}}, NOW)
    assert refresh_figures(store, ENDPOINT).demoted == {}  # 1 of 151 above 500 ms

    store.apply_counts("o3", {ENDPOINT: {"B": calls(20, bucket="latency_le_1000ms")}}, NOW)

    assert "max_latency_p99_ms 500" in refresh_figures(store, ENDPOINT).demoted["B"]


def test_not_every_variant_is_demoted_the_champion_keeps_serving(store):
    register(store)
    store.apply_counts("o1", {ENDPOINT: {"A": calls(200, 100), "B": calls(200, 100)}}, NOW)

    figures = refresh_figures(store, ENDPOINT)

    assert list(figures.demoted) == ["B"]
    assert figures.allocation == {"A": 1.0, "B": 0.0}


def test_many_variants_moving_every_counter_in_one_object_are_all_counted(store, request):
    """Ten variants, each moving every counter (latency buckets included): more increments
    than one DynamoDB update expression may hold, so it splits; nothing is lost or doubled."""
    names = [f"V{i}" for i in range(10)]
    store.register_endpoint(config(*((n, 1.0) for n in names)), NOW)
    every = VariantCounts(*(1 for _ in COUNTERS))
    assert len(COUNTERS) * len(names) > MAX_INCREMENTS_PER_UPDATE

    assert store.apply_counts("big", {ENDPOINT: dict.fromkeys(names, every)}, NOW) is True
    assert store.apply_counts("big", {ENDPOINT: dict.fromkeys(names, every)}, NOW) is False

    for variant in store.get_endpoint(ENDPOINT).variants:
        assert variant.counts == every, variant.variant_name
        assert guardrails.model_calls(variant.counts) == len(LATENCY_COUNTERS)


def test_update_expressions_stay_within_dynamodb_limits(dynamodb_store, on_call):
    """DynamoDB takes at most 4 KB per expression (moto does not check): measured here."""
    longest: list[int] = []

    def measure(params, **_):
        for action in json.loads(params["body"])["TransactItems"]:
            if "Update" in action:
                longest.append(len(action["Update"]["UpdateExpression"].encode()))

    on_call("TransactWriteItems", measure)
    names = [f"variant-{i:02d}" for i in range(10)]
    dynamodb_store.register_endpoint(config(*((n, 1.0) for n in names)), NOW)
    every = VariantCounts(*(1 for _ in COUNTERS))

    dynamodb_store.apply_counts("big", {ENDPOINT: dict.fromkeys(names, every)}, NOW)

    assert len(longest) > 1 and max(longest) <= 4096, longest


@pytest.mark.parametrize("reinstated", [{}, {"B": {"model_errors": 3, "latency_le_5ms": 9}}])
def test_a_lifecycle_reads_back_as_written(reinstated):
    lifecycle = Lifecycle(reinstated=reinstated)
    assert Lifecycle.from_json(lifecycle.to_json()) == lifecycle


def test_a_paused_weighted_endpoint_gives_a_demoted_variant_no_one(store):
    store.register_endpoint(
        replace(config(("A", 1.0), ("B", 1.0), strategy="WeightedSampling"), settings=GUARDED),
        NOW,
    )
    store.apply_counts("o1", {ENDPOINT: {"A": calls(100), "B": calls(100, 40)}}, NOW)
    refresh_figures(store, ENDPOINT)
    endpoint = store.get_endpoint(ENDPOINT)
    paused = endpoint.lifecycle.moved(ENDPOINT, Action.PAUSE)
    entry = AuditEntry(NOW, "alice", Action.PAUSE)
    assert store.change_lifecycle(ENDPOINT, endpoint.lifecycle, paused, entry)

    assert paused_allocation(store.get_endpoint(ENDPOINT)).probabilities == {"A": 1.0}
