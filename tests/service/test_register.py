from __future__ import annotations

import pytest

from abtest.errors import NotFoundError
from abtest.records import DELETED, EndpointConfig, VariantConfig
from tests.service.doubles import ENDPOINT, Catalog, config


def test_register_reads_the_catalog_and_keeps_counters(usecases, log, store):
    from abtest.usecases.invoke import Invocation

    for n in range(10):
        usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id=f"u{n}", data="x"))
    usecases.aggregate(log, log.deliver())
    before = {
        m.variant_name: m.counts.invocation_count
        for m in store.store.get_endpoint(ENDPOINT).variants
    }

    usecases.registration.catalog = Catalog(
        EndpointConfig(
            ENDPOINT,
            "EpsilonGreedy",
            {"epsilon": 0.2},
            5,
            (VariantConfig("Champion1", 2.0), VariantConfig("Challenger2", 1.0)),
        )
    )
    endpoint = usecases.registration.register(ENDPOINT)

    assert (endpoint.strategy, endpoint.strategy_params, endpoint.warmup) == (
        "EpsilonGreedy",
        {"epsilon": 0.2},
        5,
    )
    by_name = {m.variant_name: m for m in endpoint.variants}
    assert by_name["Champion1"].counts.invocation_count == before["Champion1"]
    assert by_name["Champion1"].initial_variant_weight == 2.0
    assert by_name["Challenger2"].counts.invocation_count == 0
    # The variant the catalog dropped keeps its counters, retired: no one new gets it
    assert by_name["Challenger1"].counts.invocation_count == before["Challenger1"]
    assert endpoint.lifecycle.retired == ("Challenger1",)
    assert set(usecases.stats(ENDPOINT).allocation) == {"Champion1", "Challenger2"}


def test_a_bad_strategy_is_refused_before_anything_is_written(usecases, store):
    usecases.registration.catalog = Catalog(
        EndpointConfig(ENDPOINT, "Greedy", {}, 0, (VariantConfig("Champion1"),))
    )

    with pytest.raises(ValueError, match="ThompsonSampling"):
        usecases.registration.register(ENDPOINT)

    assert store.store.get_endpoint(ENDPOINT).strategy == config().strategy


def test_a_parameter_out_of_range_is_refused_naming_it_before_anything_is_written(usecases, store):
    usecases.registration.catalog = Catalog(
        EndpointConfig(ENDPOINT, "TopTwoThompson", {"beta": 1.0}, 0, (VariantConfig("Champion1"),))
    )

    with pytest.raises(ValueError, match=r"^beta: must be in \(0, 1\)"):
        usecases.registration.register(ENDPOINT)

    assert store.store.get_endpoint(ENDPOINT).strategy == config().strategy


def test_deregister_keeps_statistics_and_stops_serving(usecases, store):
    usecases.registration.deregister(ENDPOINT)

    endpoint = store.store.get_endpoint(ENDPOINT)
    assert endpoint.status == DELETED
    assert [m.variant_name for m in endpoint.variants] == ["Champion1", "Challenger1"]


def test_register_unknown_endpoint_is_not_found(usecases):
    with pytest.raises(NotFoundError):
        usecases.registration.register("nope")
