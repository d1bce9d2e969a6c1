from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import pytest

from abtest.errors import ConflictError, ModelError, NotFoundError, StoreUnavailableError
from abtest.usecases.endpoints import EndpointCache
from abtest.usecases.invoke import Invocation, Invoke
from tests.service.doubles import ENDPOINT


def invoke(usecases, user: str | None = "u1", **fields) -> dict:
    request = Invocation(endpoint_name=ENDPOINT, user_id=user, data="text", **fields)
    return asdict(usecases.invoke(request))


def test_new_user_is_assigned_logged_and_served_by_the_target_variant(usecases, log, models):
    response = invoke(usecases)

    assert response["assignment"] == "new"
    assert response["target_variant"] in ("Champion1", "Challenger1")
    assert response["endpoint_variant"] == response["target_variant"]
    assert response["strategy"] == "WeightedSampling"  # warm-up: no variant has invocations yet
    assert response["propensity"] == pytest.approx(0.5)
    assert models.calls == [(response["target_variant"], "text", response["inference_id"])]
    [event] = log.events
    assert event["type"] == "invocation"
    assert event["variant_name"] == response["target_variant"]
    assert event["propensity"] == pytest.approx(0.5)
    assert event["assignment"] == "new"


def test_returning_user_keeps_the_variant(usecases):
    first = invoke(usecases, "sticky")
    again = [invoke(usecases, "sticky") for _ in range(20)]

    assert {r["target_variant"] for r in again} == {first["target_variant"]}
    assert {r["assignment"] for r in again} == {"existing"}


def test_event_timestamps_come_from_the_clock_at_each_call(usecases, log, clock):
    invoke(usecases, "a")
    clock.advance(90)
    invoke(usecases, "b")

    first, second = (event["timestamp"] for event in log.events)
    assert first.endswith("Z") or first.endswith("+00:00")
    assert first != second


def test_assignment_expires_after_its_ttl(usecases, store, clock):
    invoke(usecases, "ttl-user")
    clock.advance(3600)  # the fixture's assignment_ttl_seconds

    assert store.store.get_assignment(ENDPOINT, "ttl-user", clock.now()) is None
    assert invoke(usecases, "ttl-user")["assignment"] == "new"


def test_manual_override_serves_that_variant_without_storing_it(usecases, store, clock, log):
    response = invoke(usecases, "m", endpoint_variant="Challenger1")

    assert response["assignment"] == "manual"
    assert response["target_variant"] == "Challenger1"
    assert store.store.get_assignment(ENDPOINT, "m", clock.now()) is None
    assert log.events[0]["assignment"] == "manual"


def test_manual_override_must_name_a_variant_of_the_endpoint(usecases, models):
    with pytest.raises(ConflictError, match="endpoint_variant") as error:
        invoke(usecases, endpoint_variant="Challenger9")

    assert error.value.status == 409
    assert models.calls == []


def test_unregistered_and_deleted_endpoints_are_not_served(usecases, clock):
    with pytest.raises(NotFoundError, match="endpoint_name"):
        usecases.invoke(Invocation(endpoint_name="other", user_id="u", data="x"))

    usecases.registration.deregister(ENDPOINT)
    with pytest.raises(NotFoundError):
        invoke(usecases)


def test_model_error_is_a_502_naming_the_variant_and_is_counted(usecases, models, telemetry):
    models.failing = {"Champion1", "Challenger1"}

    with pytest.raises(ModelError, match=r"variant (Champion1|Challenger1)") as error:
        invoke(usecases)

    assert error.value.status == 502
    assert telemetry.totals()["ModelErrors"] == 1


def test_unreachable_store_falls_back_to_the_endpoint_weights(ports, log, models, telemetry):
    class DownStore:
        def __getattr__(self, name):
            def down(*args, **kwargs):
                raise StoreUnavailableError("dynamodb: connection refused")

            return down

    down = DownStore()
    ports.store, ports.endpoints = down, EndpointCache(down, ttl_seconds=5)
    usecases = SimpleNamespace(invoke=Invoke.from_ports(ports))

    response = invoke(usecases)

    assert response["assignment"] == "fallback"
    assert response["target_variant"] is None
    assert response["endpoint_variant"] == "Champion1"  # chosen by the endpoint itself
    assert models.calls[0][0] is None  # no TargetVariant
    assert log.events[0]["assignment"] == "fallback"
    assert telemetry.totals()["Fallbacks"] == 1


def test_store_round_trips_per_invocation(usecases, store, clock):
    """New user: one read + one conditional write; returning user: at most one read (none
    while the endpoint entry that remembers their assignment is current); metrics cached
    (read at registration by the process that registered the endpoint)."""
    invoke(usecases, "new-user")
    assert dict(store.calls) == {"get_assignment": 1, "create_assignment": 1}

    store.calls.clear()
    invoke(usecases, "new-user")
    assert dict(store.calls) == {}

    clock.advance(5)  # the endpoint entry is read again, and forgets what it remembered
    store.calls.clear()
    invoke(usecases, "new-user")
    assert dict(store.calls) == {"get_endpoint": 1, "get_assignment": 1}
    store.calls.clear()
    invoke(usecases, "new-user")
    assert dict(store.calls) == {}

    store.calls.clear()
    invoke(usecases, "second-new-user")
    assert dict(store.calls) == {"get_assignment": 1, "create_assignment": 1}


def test_metrics_record_is_reread_after_the_cache_interval(usecases, store, clock):
    invoke(usecases, "a")
    clock.advance(5)
    store.calls.clear()

    invoke(usecases, "a")

    assert store.calls["get_endpoint"] == 1


def test_concurrent_first_requests_of_one_user_get_one_variant(usecases, models):
    from concurrent.futures import ThreadPoolExecutor

    # Many distinct users so that both variants are picked somewhere; per user one variant.
    def first_requests(user: str) -> set[str]:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: invoke(usecases, user), range(8)))
        return {r["target_variant"] for r in responses}

    assert all(len(first_requests(f"racer-{n}")) == 1 for n in range(10))


def test_anonymous_requests_get_a_generated_user_id(usecases):
    response = invoke(usecases, None)

    assert response["user_id"]
    assert response["assignment"] == "new"


def test_a_variant_removed_by_reregistration_reassigns_its_users(usecases, clock):
    from abtest.records import EndpointConfig, VariantConfig
    from tests.service.doubles import Catalog

    for n in range(20):
        invoke(usecases, f"u{n}")
    usecases.registration.catalog = Catalog(
        EndpointConfig(ENDPOINT, "ThompsonSampling", {}, 0, (VariantConfig("Champion1"),))
    )
    usecases.registration.register(ENDPOINT)
    models_seen = {invoke(usecases, f"u{n}")["target_variant"] for n in range(20)}

    assert models_seen == {"Champion1"}


class _SteppedClock:
    """A wall clock that NTP sets an hour forward during each model call, beside a
    monotonic clock that moves 3 ms."""

    def __init__(self) -> None:
        self.wall, self.ticks = 1_700_000_000.0, 50.0

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.ticks

    def call(self) -> None:
        self.wall += 3600.0
        self.ticks += 0.003


def test_a_wall_clock_step_during_a_model_call_is_not_its_latency(
    usecases, ports, log, models
) -> None:
    clock = _SteppedClock()  # `usecases` registered the endpoint
    real = models.invoke

    def stepped(*args):
        clock.call()
        return real(*args)

    models.invoke = stepped
    invoke_with = Invoke.from_ports(SimpleNamespace(**{**vars(ports), "clock": clock}))
    invoke_with(Invocation(endpoint_name=ENDPOINT, user_id="u1", data="x"))
    # The guardrail's latency buckets read this: 3 ms, not an hour
    assert log.events[-1]["latency_ms"] == 3.0
