"""The Store contract: the same tests run against SQLite and DynamoDB (moto).

Adapter-specific checks (error translation details, SQLite across processes)
follow the contract tests at the end of the file.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from abtest.adapters import dynamodb as dynamodb_module
from abtest.adapters.dynamodb import DynamoDBStore
from abtest.adapters.sqlite import SqliteStore
from abtest.config_types import ExperimentSettings
from abtest.errors import StoreUnavailableError
from abtest.events import CONVERSION, INVOCATION
from abtest.records import (
    ACTIVE,
    COUNTERS,
    DELETED,
    Assignment,
    EndpointConfig,
    EventKey,
    Figures,
    VariantConfig,
    VariantCounters,
    VariantCounts,
)

NOW = 1_700_000_000.0
DAY = 24 * 3600
ENDPOINT = "reviews-helpfulness"


def assignment(variant: str, *, user: str = "u1", ttl: int = int(NOW) + DAY) -> Assignment:
    return Assignment(ENDPOINT, user, variant, "ThompsonSampling", 0.5, NOW, ttl)


def config(*variants: tuple[str, float], name: str = ENDPOINT, **params) -> EndpointConfig:
    values = {"strategy": "ThompsonSampling", "strategy_params": {}, "warmup": 0} | params
    return EndpointConfig(name, variants=tuple(VariantConfig(n, w) for n, w in variants), **values)


# A delta that moves every counter (each by a distinct amount), and non-default settings.
EVERY_COUNTER = VariantCounts(
    *(i + 1 if c.type is int else (i + 1) / 4 for i, c in enumerate(COUNTERS))
)
CONTINUOUS_PER_INVOCATION = ExperimentSettings(
    reward="continuous", unit="invocation", attribution_window_seconds=3600
)


def counts(**by_variant: tuple[int, int, float]) -> dict[str, VariantCounts]:
    return {v: VariantCounts(*c) for v, c in by_variant.items()}


def counters(
    name: str, weight: float = 1.0, invocations: int = 0, conversions: int = 0, rewards=0.0
) -> VariantCounters:
    return VariantCounters(name, weight, VariantCounts(invocations, conversions, rewards))


def metrics(store, name: str = ENDPOINT) -> dict[str, VariantCounters]:
    return {m.variant_name: m for m in store.get_endpoint(name).variants}


def run_together(n: int, work) -> list:
    """Run work(i) in n threads released at the same instant; return the results in order."""
    barrier = threading.Barrier(n)

    def task(i: int):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(task, range(n)))


# -- assignments -------------------------------------------------------------


def test_no_assignment_for_a_new_user(store):
    assert store.get_assignment(ENDPOINT, "u1", NOW) is None


def test_created_assignment_is_read_back(store):
    stored = store.create_assignment(assignment("Champion1"), NOW)

    assert stored == assignment("Champion1")
    assert store.get_assignment(ENDPOINT, "u1", NOW) == assignment("Champion1")
    assert store.get_assignment("other-endpoint", "u1", NOW) is None
    assert store.get_assignment(ENDPOINT, "u2", NOW) is None


def test_second_create_returns_the_first_assignment(store):
    store.create_assignment(assignment("Champion1"), NOW)

    stored = store.create_assignment(assignment("Challenger1"), NOW + 1)

    assert stored.variant_name == "Champion1"
    assert store.get_assignment(ENDPOINT, "u1", NOW + 1).variant_name == "Champion1"


def test_concurrent_first_assignments_end_with_one_variant(store_kit):
    # GIVEN 16 first requests of one user, each having picked a different variant
    store = store_kit.store

    # WHEN they all store their pick at the same instant
    results = run_together(16, lambda i: store.create_assignment(assignment(f"v{i}"), NOW))

    # THEN all get the winner's pick back, and only one record exists
    assert len({r.variant_name for r in results}) == 1
    assert store_kit.stored_assignments(ENDPOINT, "u1") == 1
    assert store.get_assignment(ENDPOINT, "u1", NOW) == results[0]


def test_assignment_is_absent_from_its_ttl_on(store):
    ttl = int(NOW) + 60
    store.create_assignment(assignment("Champion1", ttl=ttl), NOW)

    assert store.get_assignment(ENDPOINT, "u1", ttl - 1) is not None
    assert store.get_assignment(ENDPOINT, "u1", ttl) is None
    assert store.get_assignment(ENDPOINT, "u1", ttl + DAY) is None


def test_expired_assignment_is_replaced(store_kit):
    store = store_kit.store
    ttl = int(NOW) + 60
    store.create_assignment(assignment("Champion1", ttl=ttl), NOW)

    fresh = assignment("Challenger1", ttl=ttl + DAY)
    stored = store.create_assignment(fresh, ttl + 5)

    assert stored == fresh
    assert store.get_assignment(ENDPOINT, "u1", ttl + 5) == fresh
    assert store_kit.stored_assignments(ENDPOINT, "u1") == 1


# -- conversions -------------------------------------------------------------


def test_a_marked_conversion_is_logged_per_inference_id(store):
    ttl = int(NOW) + DAY
    assert store.conversion_logged(ENDPOINT, "u1", "inf-1", NOW) is False

    store.mark_conversion_logged(ENDPOINT, "u1", "inf-1", ttl, NOW)
    store.mark_conversion_logged(ENDPOINT, "u1", "inf-1", ttl, NOW + 1)  # a retry: no error

    assert store.conversion_logged(ENDPOINT, "u1", "inf-1", NOW + 1) is True
    assert store.conversion_logged(ENDPOINT, "u1", "inf-2", NOW) is False
    assert store.conversion_logged(ENDPOINT, "u2", "inf-1", NOW) is False
    assert store.conversion_logged("other-endpoint", "u1", "inf-1", NOW) is False


def test_conversion_marker_does_not_hide_or_replace_the_assignment(store_kit):
    store = store_kit.store
    store.create_assignment(assignment("Champion1"), NOW)

    store.mark_conversion_logged(ENDPOINT, "u1", "inf-1", int(NOW) + DAY, NOW)
    store.claim_events(
        "obj-1", [EventKey(ENDPOINT, "u1", "inf-2", CONVERSION)], int(NOW) + DAY, NOW
    )

    assert store.get_assignment(ENDPOINT, "u1", NOW).variant_name == "Champion1"
    assert store_kit.stored_assignments(ENDPOINT, "u1") == 1


def test_expired_conversion_marker_counts_as_absent(store):
    ttl = int(NOW) + 60
    store.mark_conversion_logged(ENDPOINT, "u1", "inf-1", ttl, NOW)

    assert store.conversion_logged(ENDPOINT, "u1", "inf-1", ttl) is False


KEYS = [EventKey(ENDPOINT, f"u{i}", f"inf-{i}", CONVERSION) for i in range(3)]


def test_each_conversion_is_claimed_by_one_object_and_again_by_its_redelivery(store):
    ttl = int(NOW) + DAY

    assert store.claim_events("obj-1", KEYS[:2], ttl, NOW) == set(KEYS[:2])
    # Another object holding one of them (a retried conversion logged twice) may not count it.
    assert store.claim_events("obj-2", KEYS[1:], ttl, NOW) == {KEYS[2]}
    # The first object delivered again may count its own again (its counts were not applied).
    assert store.claim_events("obj-1", KEYS[:2], ttl, NOW) == set(KEYS[:2])
    assert all(store.conversion_logged(*key[:3], NOW) for key in KEYS)


def test_an_invocation_and_its_conversion_are_claimed_apart(store):
    """A redriven object claims its invocations: they share ids with their conversions."""
    ttl = int(NOW) + DAY
    invocation = KEYS[0]._replace(event_type=INVOCATION)

    assert store.claim_events("redriven-1", [invocation], ttl, NOW) == {invocation}
    assert store.conversion_logged(*KEYS[0][:3], NOW) is False  # not a conversion marker
    assert store.claim_events("obj-1", KEYS[:1], ttl, NOW) == {KEYS[0]}
    assert store.claim_events("redriven-2", [invocation], ttl, NOW) == set()


def test_a_claim_keeps_the_request_marker_and_the_marker_keeps_the_claim(store):
    ttl = int(NOW) + DAY
    store.mark_conversion_logged(*KEYS[0][:3], ttl, NOW)
    assert store.claim_events("obj-1", KEYS[:1], ttl, NOW) == {KEYS[0]}

    store.mark_conversion_logged(*KEYS[0][:3], ttl + DAY, NOW)  # a late retry marks it again

    assert store.claim_events("obj-2", KEYS[:1], ttl, NOW) == set()


def test_an_expired_claim_is_a_new_conversion(store):
    ttl = int(NOW) + 60
    store.claim_events("obj-1", KEYS[:1], ttl, NOW)

    assert store.claim_events("obj-2", KEYS[:1], ttl + DAY, ttl) == {KEYS[0]}


def test_concurrent_claims_of_one_conversion_grant_exactly_one(store):
    results = run_together(
        8, lambda i: store.claim_events(f"obj-{i}", KEYS[:1], int(NOW) + DAY, NOW)
    )

    assert sorted(len(r) for r in results) == [0] * 7 + [1]


# -- endpoints ---------------------------------------------------------------


def test_unknown_endpoint_is_none(store):
    assert store.get_endpoint("nobody") is None


def test_registered_endpoint_keeps_variant_order_with_zero_counters(store):
    returned = store.register_endpoint(
        config(
            ("Zeta", 2.0),
            ("Alpha", 1.0),
            ("Mu", 0.5),
            strategy="EpsilonGreedy",
            strategy_params={"epsilon": 0.1},
            warmup=3,
        ),
        NOW,
    )

    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint == returned
    assert endpoint.endpoint_name == ENDPOINT
    assert (endpoint.strategy, endpoint.strategy_params, endpoint.warmup) == (
        "EpsilonGreedy",
        {"epsilon": 0.1},
        3,
    )
    assert endpoint.status == ACTIVE
    assert endpoint.updated_at == NOW
    assert endpoint.variants == (
        counters("Zeta", 2.0, 0, 0, 0.0),
        counters("Alpha", 1.0, 0, 0, 0.0),
        counters("Mu", 0.5, 0, 0, 0.0),
    )


def test_reregistration_keeps_counters_of_kept_variants(store):
    # GIVEN an endpoint whose variants have counted invocations
    store.register_endpoint(config(("A", 1.0), ("B", 1.0), ("C", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(10, 2, 1.5), B=(7, 1, 1.0), C=(3, 0, 0))}, NOW)

    # WHEN it is registered again with B dropped, D added and new parameters
    endpoint = store.register_endpoint(
        config(
            ("C", 3.0),
            ("D", 1.0),
            ("A", 0.5),
            strategy="TopTwoThompson",
            strategy_params={"beta": 0.7},
            warmup=5,
        ),
        NOW + 10,
    )

    # THEN listed variants keep their counters, in the new order, with the new weights, and
    # the dropped one keeps its own, last and retired (its logged events still count)
    expected = (
        counters("C", 3.0, 3, 0, 0.0),
        counters("D", 1.0, 0, 0, 0.0),
        counters("A", 0.5, 10, 2, 1.5),
        counters("B", 1.0, 7, 1, 1.0),
    )
    assert endpoint.variants == expected
    assert store.get_endpoint(ENDPOINT).variants == expected
    assert endpoint.lifecycle.retired == ("B",)
    assert [v.variant_name for v in endpoint.serving_variants] == ["C", "D", "A"]
    assert (endpoint.strategy, endpoint.strategy_params, endpoint.warmup) == (
        "TopTwoThompson",
        {"beta": 0.7},
        5,
    )
    assert endpoint.updated_at == NOW + 10


@pytest.mark.parametrize(
    "params",
    [{}, {"epsilon": 0.25}, {"beta": 1e-9, "count": 3}, {"epsilon": 0.1 + 0.2}],
)
def test_strategy_params_are_read_back_exactly_with_their_types(store, params):
    # The store keeps whatever registration checked: every digit of a float, ints as ints.
    store.register_endpoint(config(("A", 1.0), strategy_params=params), NOW)

    read = store.get_endpoint(ENDPOINT).strategy_params
    assert read == params
    assert {k: type(v) for k, v in read.items()} == {k: type(v) for k, v in params.items()}


def test_reregistration_replaces_the_strategy_params(store):
    store.register_endpoint(
        config(("A", 1.0), strategy="EpsilonGreedy", strategy_params={"epsilon": 0.3}), NOW
    )
    store.register_endpoint(config(("A", 1.0)), NOW + 1)

    assert store.get_endpoint(ENDPOINT).strategy_params == {}


def test_a_variant_dropped_and_listed_again_keeps_its_counters_and_stays_retired(store):
    # Retiring is for good (whoever retired it: a person, or a config that dropped it);
    # a challenger that comes back is a new variant, under a new name.
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(B=(5, 1, 1.0))}, NOW)

    store.register_endpoint(config(("A", 1.0)), NOW + 1)
    endpoint = store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW + 2)

    assert metrics(store)["B"] == counters("B", 1.0, 5, 1, 1.0)
    assert endpoint.lifecycle.retired == ("B",)
    assert endpoint.lifecycle.version == 1  # retired once, by the first registration


def test_registration_retiring_a_dropped_variant_is_audited_once(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0), ("C", 1.0)), NOW)

    store.register_endpoint(config(("A", 1.0)), NOW + 1)
    store.register_endpoint(config(("A", 1.0)), NOW + 2)  # a restart: nothing more to do

    (entry,) = store.audit_log(ENDPOINT)
    assert (entry.at, entry.actor, entry.action) == (NOW + 1, "registration", "retire-variant")
    assert entry.details["variants"] == ["B", "C"]


def test_deregistered_endpoint_keeps_counters_with_status_deleted(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(4, 1, 1.0))}, NOW)

    store.deregister_endpoint(ENDPOINT, NOW + 10)

    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.status == DELETED
    assert endpoint.updated_at == NOW + 10
    assert metrics(store)["A"] == counters("A", 1.0, 4, 1, 1.0)


def test_registering_a_deleted_endpoint_again_reactivates_it_with_its_counters(store):
    store.register_endpoint(config(("A", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(4, 1, 1.0))}, NOW)
    store.deregister_endpoint(ENDPOINT, NOW + 1)

    endpoint = store.register_endpoint(config(("A", 1.0)), NOW + 2)

    assert endpoint.status == ACTIVE
    assert endpoint.variants == (counters("A", 1.0, 4, 1, 1.0),)


def test_deregistering_an_unknown_endpoint_creates_nothing(store):
    store.deregister_endpoint("nobody", NOW)

    assert store.get_endpoint("nobody") is None


def test_duplicate_variant_names_are_refused(store):
    with pytest.raises(ValueError, match="duplicate"):
        store.register_endpoint(config(("A", 1.0), ("A", 2.0)), NOW)

    assert store.get_endpoint(ENDPOINT) is None


# -- aggregation -------------------------------------------------------------


def test_apply_counts_adds_to_the_counters(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    store.register_endpoint(config(("X", 1.0), name="other"), NOW)

    assert store.apply_counts(
        "obj-1", {ENDPOINT: counts(A=(3, 1, 0.5), B=(2, 0, 0)), "other": counts(X=(1, 1, 1.0))}, NOW
    )
    assert store.apply_counts("obj-2", {ENDPOINT: counts(A=(4, 2, 0.25))}, NOW)

    assert metrics(store) == {
        "A": counters("A", 1.0, 7, 3, 0.75),
        "B": counters("B", 1.0, 2, 0, 0.0),
    }
    assert metrics(store, "other") == {"X": counters("X", 1.0, 1, 1, 1.0)}


def test_fractional_rewards_sum_without_drift(store):
    store.register_endpoint(config(("A", 1.0)), NOW)

    for i in range(10):
        store.apply_counts(f"obj-{i}", {ENDPOINT: counts(A=(1, 1, 0.1))}, NOW)

    assert metrics(store)["A"].counts.reward_sum == pytest.approx(1.0, abs=1e-12)


def test_same_object_applied_twice_counts_once(store):
    store.register_endpoint(config(("A", 1.0)), NOW)
    delta = {ENDPOINT: counts(A=(5, 2, 2.0))}

    assert store.apply_counts("s3://bucket/2026/11/29/obj-1.gz", delta, NOW) is True
    assert store.apply_counts("s3://bucket/2026/11/29/obj-1.gz", delta, NOW + 60) is False

    assert metrics(store)["A"] == counters("A", 1.0, 5, 2, 2.0)


def test_an_object_with_no_known_endpoint_is_still_recorded_as_applied(store):
    assert store.apply_counts("obj-1", {"nobody": counts(A=(5, 0, 0))}, NOW) is True
    assert store.apply_counts("obj-1", {}, NOW) is False


def test_unknown_endpoints_and_variants_are_ignored(store):
    store.register_endpoint(config(("A", 1.0)), NOW)

    applied = store.apply_counts(
        "obj-1",
        {ENDPOINT: counts(A=(3, 1, 1.0), Ghost=(9, 9, 9.0)), "nobody": counts(A=(9, 9, 9))},
        NOW,
    )

    assert applied is True
    assert store.get_endpoint(ENDPOINT).variants == (counters("A", 1.0, 3, 1, 1.0),)
    assert store.get_endpoint("nobody") is None


def test_applied_object_records_are_not_endpoints(store):
    store.apply_counts("obj-1", {}, NOW)

    assert store.get_endpoint("obj-1") is None
    assert store.get_endpoint("#object#obj-1") is None


def test_counts_still_apply_to_a_deleted_endpoint(store):
    # Events delivered after Deleting were served before it: they belong to the statistics.
    store.register_endpoint(config(("A", 1.0)), NOW)
    store.deregister_endpoint(ENDPOINT, NOW + 1)

    store.apply_counts("obj-1", {ENDPOINT: counts(A=(2, 1, 1.0))}, NOW + 2)

    assert metrics(store)["A"] == counters("A", 1.0, 2, 1, 1.0)


def test_concurrent_objects_add_up_exactly(store):
    # GIVEN 8 aggregators each applying its own objects to the same counters
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)

    def aggregate(i: int) -> list[bool]:
        return [
            store.apply_counts(
                f"obj-{i}-{j}", {ENDPOINT: counts(A=(i + 1, 1, 0.5), B=(1, 0, 0.0))}, NOW
            )
            for j in range(5)
        ]

    # WHEN they run at the same time
    results = run_together(8, aggregate)

    # THEN no increment is lost
    assert all(all(r) for r in results)
    assert metrics(store) == {
        "A": counters("A", 1.0, 5 * sum(range(1, 9)), 40, 20.0),
        "B": counters("B", 1.0, 40, 0, 0.0),
    }


def test_redelivered_object_applied_concurrently_counts_once(store):
    store.register_endpoint(config(("A", 1.0)), NOW)

    results = run_together(
        8, lambda i: store.apply_counts("obj-1", {ENDPOINT: counts(A=(1, 1, 1))}, NOW)
    )

    assert sorted(results) == [False] * 7 + [True]
    assert metrics(store)["A"] == counters("A", 1.0, 1, 1, 1.0)


def test_reregistration_racing_aggregation_loses_no_increment(store):
    # GIVEN aggregators incrementing while registration re-runs (every InService event)
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)

    def work(i: int) -> None:
        for j in range(6):
            if i == 0:
                store.register_endpoint(config(("A", 1.0), ("B", 2.0)), NOW + j)
            else:
                store.apply_counts(
                    f"obj-{i}-{j}", {ENDPOINT: counts(A=(1, 0, 0), B=(2, 1, 1))}, NOW
                )

    run_together(5, work)

    # THEN every increment of the 4 aggregators is there
    assert metrics(store) == {
        "A": counters("A", 1.0, 24, 0, 0.0),
        "B": counters("B", 2.0, 48, 24, 24.0),
    }


def test_an_object_touching_more_endpoints_than_one_transaction_holds(store, monkeypatch):
    # DynamoDB splits an object past 99 endpoints (100 actions with the idempotency
    # record); shrunk here to keep moto fast. SQLite ignores the setting.
    monkeypatch.setattr(dynamodb_module, "ENDPOINTS_PER_TRANSACTION", 3)
    names = [f"endpoint-{i:02}" for i in range(10)]
    for name in names:
        store.register_endpoint(config(("A", 1.0), name=name), NOW)
    delta = {name: counts(A=(i, 1, 0.5)) for i, name in enumerate(names)}

    assert store.apply_counts("obj-1", delta, NOW) is True
    assert store.apply_counts("obj-1", delta, NOW) is False

    assert [metrics(store, name)["A"].counts.invocation_count for name in names] == list(range(10))


# -- figures -----------------------------------------------------------------


def figures_for(endpoint, share: float = 0.25) -> Figures:
    return Figures(
        endpoint.basis,
        "ThompsonSampling",
        {"A": share, "B": 1.0 - share},
        {"winner": None, "reason": "too_few_samples", "variants": [{"name": "A", "p": 0.5}]},
    )


def test_saved_figures_are_read_back_with_their_record(store):
    # GIVEN a record with counters
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(10, 2, 2.0), B=(12, 6, 5.5))}, NOW)
    figures = figures_for(store.get_endpoint(ENDPOINT))

    # WHEN its figures are saved
    assert store.save_figures(ENDPOINT, figures) is True

    # THEN the record carries them, as its own, exactly (floats included)
    read = store.get_endpoint(ENDPOINT)
    assert read.figures == figures
    assert read.fresh_figures == figures
    assert metrics(store)["B"] == counters("B", 1.0, 12, 6, 5.5)


def test_figures_of_a_record_that_changed_since_are_refused(store):
    # GIVEN figures worked out from the record before another object was counted
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(10, 2, 2.0))}, NOW)
    before = store.get_endpoint(ENDPOINT)
    store.apply_counts("obj-2", {ENDPOINT: counts(B=(3, 1, 1.0))}, NOW)

    # WHEN they are saved, THEN they are refused and nothing is stored
    assert store.save_figures(ENDPOINT, figures_for(before)) is False
    assert store.get_endpoint(ENDPOINT).figures is None
    assert store.save_figures("unknown-endpoint", figures_for(before)) is False


@pytest.mark.parametrize(
    "change",
    [
        lambda store: store.apply_counts("obj-2", {ENDPOINT: counts(A=(1, 0, 0.0))}, NOW),
        lambda store: store.register_endpoint(
            config(("A", 1.0), ("B", 1.0), strategy="UCB1"), NOW + 1
        ),
        lambda store: store.register_endpoint(config(("A", 1.0), ("B", 2.0)), NOW + 1),
        lambda store: store.register_endpoint(config(("A", 1.0)), NOW + 1),
    ],
    ids=["counts", "strategy", "weights", "variants"],
)
def test_stored_figures_go_stale_when_their_record_changes(store, change):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(10, 2, 2.0), B=(4, 1, 1.0))}, NOW)
    figures = figures_for(store.get_endpoint(ENDPOINT))
    assert store.save_figures(ENDPOINT, figures)

    change(store)

    changed = store.get_endpoint(ENDPOINT)
    assert (changed.figures, changed.fresh_figures) == (figures, None)
    assert metrics(store)["A"].counts.invocation_count in (10, 11)  # the counters stay


def test_dynamodb_figures_lose_to_an_increment_between_read_and_write(dynamodb_store, on_call):
    # GIVEN an object counted just after save_figures read the record
    store = dynamodb_store
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    figures = figures_for(store.get_endpoint(ENDPOINT))
    raced = []

    def count_once(**_):
        if not raced:
            raced.append(1)
            store.apply_counts("obj-1", {ENDPOINT: counts(A=(1, 1, 1.0))}, NOW)

    on_call("UpdateItem", count_once)

    # WHEN the figures are written, THEN the condition refuses them
    assert store.save_figures(ENDPOINT, figures) is False
    assert store.get_endpoint(ENDPOINT).figures is None


# -- unavailability ----------------------------------------------------------


def test_unreachable_store_raises_store_unavailable(unreachable_store):
    store = unreachable_store
    calls = [
        lambda: store.get_assignment(ENDPOINT, "u1", NOW),
        lambda: store.create_assignment(assignment("A"), NOW),
        lambda: store.conversion_logged(ENDPOINT, "u1", "inf-1", NOW),
        lambda: store.mark_conversion_logged(ENDPOINT, "u1", "inf-1", int(NOW) + DAY, NOW),
        lambda: store.claim_events("obj-1", KEYS, int(NOW) + DAY, NOW),
        lambda: store.get_endpoint(ENDPOINT),
        lambda: store.register_endpoint(config(("A", 1.0)), NOW),
        lambda: store.deregister_endpoint(ENDPOINT, NOW),
        lambda: store.apply_counts("obj-1", {ENDPOINT: counts(A=(1, 0, 0))}, NOW),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailableError):
            call()


# -- DynamoDB specifics ------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    ],
)
def test_dynamodb_throttling_and_server_faults_are_store_unavailable(aws_credentials, code):
    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoDBStore("assignment", "metrics", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code=code, http_status_code=400)

        with pytest.raises(StoreUnavailableError) as raised:
            store.get_assignment(ENDPOINT, "u1", NOW)

    assert code in str(raised.value)


def test_dynamodb_missing_table_is_store_unavailable(dynamodb_store):
    store = DynamoDBStore("no-such-table", "metrics", client=dynamodb_store.client)

    with pytest.raises(StoreUnavailableError, match="ResourceNotFoundException"):
        store.get_assignment(ENDPOINT, "u1", NOW)


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ValidationException", "ResourceNotFoundException"]
)
def test_refused_requests_are_store_unavailable_and_logged_for_an_operator(
    aws_credentials, caplog, code
):
    client = boto3.client("dynamodb", region_name="us-east-1")
    store = DynamoDBStore("assignment", "metrics", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code=code, http_status_code=400)
        with pytest.raises(StoreUnavailableError, match=code):
            store.get_assignment(ENDPOINT, "u1", NOW)

    assert any(code in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_dynamodb_request_path_round_trips(dynamodb_store, on_call):
    # Returning user: one GetItem. New user: one conditional PutItem, and a loser of the
    # race gets the winner from the failed condition, without a second read.
    store = dynamodb_store
    calls: list[str] = []
    on_call("*", lambda model, **_: calls.append(model.name))

    store.create_assignment(assignment("Champion1"), NOW)
    assert calls == ["PutItem"]
    store.get_assignment(ENDPOINT, "u1", NOW)
    assert calls == ["PutItem", "GetItem"]
    stored = store.create_assignment(assignment("Challenger1"), NOW)
    assert stored.variant_name == "Champion1"
    assert calls == ["PutItem", "GetItem", "PutItem"]


def test_dynamodb_object_split_and_interrupted_is_completed_once(
    dynamodb_store, on_call, monkeypatch
):
    # GIVEN an object split in chunks whose delivery fails after the first chunk
    monkeypatch.setattr(dynamodb_module, "ENDPOINTS_PER_TRANSACTION", 2)
    store = dynamodb_store
    names = ["e0", "e1", "e2", "e3", "e4"]
    for name in names:
        store.register_endpoint(config(("A", 1.0), name=name), NOW)
    delta = {name: counts(A=(1, 0, 0)) for name in names}
    transactions = []

    def fail_second_transaction(**_):
        transactions.append(1)
        if len(transactions) == 2:
            raise EndpointConnectionError(endpoint_url="http://dynamodb")

    on_call("TransactWriteItems", fail_second_transaction)
    with pytest.raises(StoreUnavailableError):
        store.apply_counts("obj-1", delta, NOW)

    # WHEN the object is delivered again, and once more
    assert store.apply_counts("obj-1", delta, NOW) is True
    assert store.apply_counts("obj-1", delta, NOW) is False

    # THEN every endpoint counted exactly once
    assert [metrics(store, n)["A"].counts.invocation_count for n in names] == [1, 1, 1, 1, 1]


def test_dynamodb_variant_dropped_between_read_and_increment_still_counts(dynamodb_store, on_call):
    # GIVEN a registration that drops variant B just after aggregation read the endpoint
    store = dynamodb_store
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    raced = []

    def reregister_once(**_):
        if not raced:
            raced.append(1)
            store.register_endpoint(config(("A", 1.0)), NOW + 1)

    on_call("TransactWriteItems", reregister_once)

    # WHEN the counts are applied
    applied = store.apply_counts("obj-1", {ENDPOINT: counts(A=(3, 1, 1), B=(5, 5, 5))}, NOW)

    # THEN B is retired, not removed: its events count all the same
    assert applied is True
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.variants == (counters("A", 1.0, 3, 1, 1.0), counters("B", 1.0, 5, 5, 5.0))
    assert endpoint.lifecycle.retired == ("B",)


def cancelled(*reasons: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": r} for r in reasons],
        },
        "TransactWriteItems",
    )


def test_dynamodb_transaction_conflict_is_retried(dynamodb_store, on_call):
    # Real DynamoDB cancels concurrent transactions on one item; moto never does.
    store = dynamodb_store
    store.register_endpoint(config(("A", 1.0)), NOW)
    failures = [cancelled("None", "TransactionConflict")]

    def conflict_once(**_):
        if failures:
            raise failures.pop()

    on_call("TransactWriteItems", conflict_once)

    assert store.apply_counts("obj-1", {ENDPOINT: counts(A=(2, 1, 1))}, NOW) is True
    assert metrics(store)["A"] == counters("A", 1.0, 2, 1, 1.0)


def test_dynamodb_transaction_cancelled_for_another_reason_propagates(dynamodb_store, on_call):
    store = dynamodb_store
    store.register_endpoint(config(("A", 1.0)), NOW)

    def invalid(**_):
        raise cancelled("None", "ValidationError")

    on_call("TransactWriteItems", invalid)

    with pytest.raises(ClientError):
        store.apply_counts("obj-1", {ENDPOINT: counts(A=(2, 1, 1))}, NOW)


def test_dynamodb_item_written_before_strategy_params_reads_and_reregisters(
    dynamodb_client, dynamodb_store
):
    # GIVEN items as the store wrote them before: a top-level epsilon whatever the strategy
    def legacy_item(name: str, strategy: str, epsilon: str) -> dict:
        variant = {
            "initial_variant_weight": {"N": "1.0"},
            "invocation_count": {"N": "40"},
            "conversion_count": {"N": "4"},
            "reward_sum": {"N": "4.0"},
            "position": {"N": "0"},
        }
        return {
            "endpoint_name": {"S": name},
            "strategy": {"S": strategy},
            "epsilon": {"N": epsilon},
            "warmup": {"N": "2"},
            "status": {"S": ACTIVE},
            "updated_at": {"N": repr(NOW)},
            "variants": {"M": {"A": {"M": variant}}},
        }

    for item in (
        legacy_item("eg", "EpsilonGreedy", "0.3"),
        legacy_item("ts", "ThompsonSampling", "0.1"),
    ):
        dynamodb_client.put_item(TableName=dynamodb_store.metrics_table, Item=item)

    # THEN the epsilon is EpsilonGreedy's parameter and nothing for the others
    greedy = dynamodb_store.get_endpoint("eg")
    assert (greedy.strategy, greedy.strategy_params, greedy.warmup) == (
        "EpsilonGreedy",
        {"epsilon": 0.3},
        2,
    )
    assert dynamodb_store.get_endpoint("ts").strategy_params == {}

    # AND re-registration writes the map, drops the old attribute and keeps the counters
    dynamodb_store.register_endpoint(
        config(("A", 1.0), name="eg", strategy="EpsilonGreedy", strategy_params={"epsilon": 0.2}),
        NOW + 1,
    )
    item = dynamodb_client.get_item(
        TableName=dynamodb_store.metrics_table, Key={"endpoint_name": {"S": "eg"}}
    )
    assert "epsilon" not in item["Item"]
    assert item["Item"]["strategy_params"] == {"M": {"epsilon": {"N": "0.2"}}}
    assert dynamodb_store.get_endpoint("eg").variants == (counters("A", 1.0, 40, 4, 4.0),)


def test_dynamodb_item_written_before_settings_reads_counts_and_reregisters(
    dynamodb_client, dynamodb_store
):
    # GIVEN an endpoint item as the store wrote it before settings and the new counters
    variant = {
        "initial_variant_weight": {"N": "1.0"},
        "invocation_count": {"N": "40"},
        "conversion_count": {"N": "4"},
        "reward_sum": {"N": "3.5"},
        "position": {"N": "0"},
    }
    item = {
        "endpoint_name": {"S": ENDPOINT},
        "strategy": {"S": "ThompsonSampling"},
        "strategy_params": {"M": {}},
        "warmup": {"N": "0"},
        "status": {"S": ACTIVE},
        "updated_at": {"N": repr(NOW)},
        "variants": {"M": {"A": {"M": variant}}},
    }
    dynamodb_client.put_item(TableName=dynamodb_store.metrics_table, Item=item)

    # THEN it reads with the new counters at 0 and the default settings
    endpoint = dynamodb_store.get_endpoint(ENDPOINT)
    assert endpoint.variants == (counters("A", 1.0, 40, 4, 3.5),)
    assert endpoint.settings == ExperimentSettings()

    # AND every counter counts onto it (a counter it lacks starts at 0), and a
    # re-registration stores the settings, keeping the counters
    assert dynamodb_store.apply_counts("obj-1", {ENDPOINT: {"A": EVERY_COUNTER}}, NOW)
    dynamodb_store.register_endpoint(
        config(("A", 1.0), settings=CONTINUOUS_PER_INVOCATION), NOW + 1
    )
    endpoint = dynamodb_store.get_endpoint(ENDPOINT)
    assert endpoint.variants[0].counts == VariantCounts(40, 4, 3.5) + EVERY_COUNTER
    assert endpoint.settings == CONTINUOUS_PER_INVOCATION


# -- SQLite specifics --------------------------------------------------------


# The endpoints table as files written before strategy_params have it.
SCHEMA_WITH_EPSILON = """
CREATE TABLE endpoints (
    endpoint_name TEXT PRIMARY KEY,
    strategy TEXT NOT NULL,
    epsilon REAL NOT NULL,
    warmup INTEGER NOT NULL,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE variants (
    endpoint_name TEXT NOT NULL,
    variant_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    initial_variant_weight REAL NOT NULL,
    invocation_count INTEGER NOT NULL DEFAULT 0,
    conversion_count INTEGER NOT NULL DEFAULT 0,
    reward_sum REAL NOT NULL DEFAULT 0.0,
    PRIMARY KEY (endpoint_name, variant_name)
) WITHOUT ROWID;
INSERT INTO endpoints VALUES ('eg', 'EpsilonGreedy', 0.3, 2, 'active', 1700000000.0);
INSERT INTO endpoints VALUES ('ts', 'ThompsonSampling', 0.1, 0, 'deleted', 1700000000.0);
INSERT INTO variants VALUES ('eg', 'A', 0, 1.0, 40, 4, 4.0);
INSERT INTO variants VALUES ('ts', 'B', 0, 2.0, 7, 1, 1.0);
"""


def test_sqlite_file_with_the_epsilon_column_is_migrated_once_keeping_everything(tmp_path):
    # GIVEN a file written with the schema before strategy_params
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_WITH_EPSILON)

    # WHEN the store opens it (twice: the second open finds nothing to do)
    SqliteStore(path).close()
    store = SqliteStore(path)

    # THEN epsilon became EpsilonGreedy's parameter, dropped for other strategies
    greedy, thompson = store.get_endpoint("eg"), store.get_endpoint("ts")
    assert (greedy.strategy, greedy.strategy_params, greedy.warmup) == (
        "EpsilonGreedy",
        {"epsilon": 0.3},
        2,
    )
    assert greedy.variants == (counters("A", 1.0, 40, 4, 4.0),)
    assert (thompson.strategy_params, thompson.status) == ({}, DELETED)
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(endpoints)")}
    assert "epsilon" not in columns

    # AND registration and counting go on as in a new file
    store.register_endpoint(
        config(("A", 1.0), name="eg", strategy="EpsilonGreedy", strategy_params={"epsilon": 0.2}),
        NOW,
    )
    store.apply_counts("obj-1", {"eg": counts(A=(1, 1, 1.0))}, NOW)
    assert store.get_endpoint("eg").strategy_params == {"epsilon": 0.2}
    assert metrics(store, "eg")["A"] == counters("A", 1.0, 41, 5, 5.0)
    store.close()


# The schema as files written before experiment settings and the users' counters have it.
SCHEMA_BEFORE_SETTINGS = """
CREATE TABLE IF NOT EXISTS assignments (
    endpoint_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    variant_name TEXT NOT NULL,
    strategy TEXT NOT NULL,
    propensity REAL NOT NULL,
    assigned_at REAL NOT NULL,
    ttl INTEGER NOT NULL,
    PRIMARY KEY (endpoint_name, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversions (
    endpoint_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    inference_id TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    counted_by TEXT,
    PRIMARY KEY (endpoint_name, user_id, inference_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint_name TEXT PRIMARY KEY,
    strategy TEXT NOT NULL,
    strategy_params TEXT NOT NULL,  -- a JSON object: parameter name -> value
    warmup INTEGER NOT NULL,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    figures TEXT  -- a JSON object (Figures), worked out when the counters last changed
);
CREATE TABLE IF NOT EXISTS variants (
    endpoint_name TEXT NOT NULL,
    variant_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    initial_variant_weight REAL NOT NULL,
    invocation_count INTEGER NOT NULL DEFAULT 0,
    conversion_count INTEGER NOT NULL DEFAULT 0,
    reward_sum REAL NOT NULL DEFAULT 0.0,
    PRIMARY KEY (endpoint_name, variant_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applied_objects (
    object_key TEXT PRIMARY KEY,
    applied_at REAL NOT NULL
);
"""


def test_sqlite_file_written_before_settings_is_migrated_keeping_every_counter(tmp_path):
    # GIVEN a file as the store wrote it before settings and the new counters, with counters
    path = tmp_path / "before-settings.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_BEFORE_SETTINGS)
        db.execute(
            "INSERT INTO endpoints VALUES (?, 'ThompsonSampling', '{}', 0, 'active', ?, NULL)",
            (ENDPOINT, NOW),
        )
        db.execute("INSERT INTO variants VALUES (?, 'A', 0, 1.0, 40, 4, 3.5)", (ENDPOINT,))

    # WHEN the store opens it (twice: the second open finds nothing to do)
    SqliteStore(path).close()
    store = SqliteStore(path)

    # THEN the counters are kept, the new ones start at 0, the settings are the defaults
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.variants == (counters("A", 1.0, 40, 4, 3.5),)
    assert endpoint.settings == ExperimentSettings()

    # AND every counter counts, and a registration stores its settings
    store.apply_counts("obj-1", {ENDPOINT: {"A": EVERY_COUNTER}}, NOW)
    store.register_endpoint(config(("A", 1.0), settings=CONTINUOUS_PER_INVOCATION), NOW)
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.variants[0].counts == VariantCounts(40, 4, 3.5) + EVERY_COUNTER
    assert endpoint.settings == CONTINUOUS_PER_INVOCATION
    store.close()


def test_sqlite_file_written_before_figures_is_migrated_keeping_the_counters(tmp_path):
    # GIVEN a file of the schema before stored figures, with counters
    path = tmp_path / "before-figures.sqlite3"
    old_schema = SCHEMA_BEFORE_SETTINGS.replace(
        "updated_at REAL NOT NULL,\n    figures TEXT", "updated_at REAL NOT NULL"
    )
    assert old_schema != SCHEMA_BEFORE_SETTINGS
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
        db.execute(
            "INSERT INTO endpoints VALUES (?, 'ThompsonSampling', '{}', 0, 'active', ?)",
            (ENDPOINT, NOW),
        )
        db.execute("INSERT INTO variants VALUES (?, 'A', 0, 1.0, 40, 4, 3.5)", (ENDPOINT,))

    # WHEN the store opens it
    store = SqliteStore(path)

    # THEN the counters are all there, without figures until some are saved
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.variants == (counters("A", 1.0, 40, 4, 3.5),)
    assert endpoint.figures is None
    figures = Figures(endpoint.basis, "ThompsonSampling", {"A": 1.0}, {"winner": None})
    assert store.save_figures(ENDPOINT, figures) is True
    assert store.get_endpoint(ENDPOINT).fresh_figures == figures
    store.close()


def test_sqlite_in_a_missing_folder_is_store_unavailable(tmp_path):
    with pytest.raises(StoreUnavailableError):
        SqliteStore(tmp_path / "missing" / "abtest.db")


def test_sqlite_write_lock_held_too_long_is_store_unavailable_and_reads_go_on(tmp_path):
    # GIVEN another process holding the write lock longer than the busy timeout
    path = tmp_path / "abtest.db"
    store = SqliteStore(path, busy_timeout=0.05)
    store.create_assignment(assignment("Champion1"), NOW)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        # THEN writes report the store unavailable, and reads (WAL) are not blocked
        with pytest.raises(StoreUnavailableError):
            store.create_assignment(assignment("Challenger1", user="u2"), NOW)
        assert store.get_assignment(ENDPOINT, "u1", NOW).variant_name == "Champion1"
    finally:
        other.execute("ROLLBACK")
        other.close()
    # AND once the lock is released, the store works again
    assert store.create_assignment(assignment("Challenger1", user="u2"), NOW).user_id == "u2"
    store.close()


def test_sqlite_uses_wal_mode(tmp_path):
    SqliteStore(tmp_path / "abtest.db").close()

    with sqlite3.connect(tmp_path / "abtest.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_data_survives_reopening(tmp_path):
    store = SqliteStore(tmp_path / "abtest.db")
    store.register_endpoint(config(("A", 1.0)), NOW)
    store.create_assignment(assignment("A"), NOW)
    store.close()

    reopened = SqliteStore(tmp_path / "abtest.db")
    assert reopened.get_assignment(ENDPOINT, "u1", NOW).variant_name == "A"
    assert reopened.get_endpoint(ENDPOINT).variant_names == ("A",)
    reopened.close()


def test_sqlite_connections_of_finished_threads_are_closed(tmp_path):
    # A server may run each request on a fresh thread: open files must not pile up.
    store = SqliteStore(tmp_path / "abtest.db")

    def database_files_open_after(threads: int) -> int:
        for _ in range(threads):
            thread = threading.Thread(target=store.get_assignment, args=(ENDPOINT, "u1", NOW))
            thread.start()
            thread.join()
        gc.collect()
        links = (os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd"))
        return sum(link.startswith(str(tmp_path.resolve())) for link in links)

    settled = database_files_open_after(60)  # SQLite keeps some closed descriptors for reuse
    # A connection kept per finished thread would hold 2 more files each (db, wal).
    assert database_files_open_after(60) - settled < 5
    store.close()


USERS = 10
THREADS_PER_PROCESS = 4


def _contend(store: SqliteStore, barrier, results, process: int) -> None:
    """In a forked process: race for each user's first assignment from several threads."""

    def task(thread: int) -> None:
        for u in range(USERS):
            barrier.wait()
            stored = store.create_assignment(assignment(f"p{process}t{thread}", user=f"u{u}"), NOW)
            results.put((u, stored.variant_name))

    threads = [threading.Thread(target=task, args=(t,)) for t in range(THREADS_PER_PROCESS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_sqlite_first_assignment_is_conditional_across_processes(tmp_path):
    # GIVEN two processes sharing the file (the store opened before fork, as a server would)
    path = tmp_path / "abtest.db"
    store = SqliteStore(path)
    store.get_assignment(ENDPOINT, "u0", NOW)  # the parent's own connection, not to be reused
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2 * THREADS_PER_PROCESS)
    results = context.Queue()
    processes = [
        context.Process(target=_contend, args=(store, barrier, results, p)) for p in range(2)
    ]
    for p in processes:
        p.start()

    # WHEN 8 threads across both race for each user's first assignment
    picks: dict[int, set[str]] = {}
    for _ in range(2 * THREADS_PER_PROCESS * USERS):
        user, variant = results.get(timeout=30)
        picks.setdefault(user, set()).add(variant)
    for p in processes:
        p.join(timeout=30)

    # THEN every user ended with one variant, stored once
    assert [p.exitcode for p in processes] == [0, 0]
    assert all(len(variants) == 1 for variants in picks.values())
    assert len(picks) == USERS
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM assignments").fetchone()[0] == USERS
    for user, (variant,) in picks.items():
        assert store.get_assignment(ENDPOINT, f"u{user}", NOW).variant_name == variant
    store.close()
