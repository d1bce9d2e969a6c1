from __future__ import annotations

import pytest

from abtest.errors import ConflictError, ModelError, NotFoundError, StoreUnavailableError
from abtest.http.bodies import InvocationRequest
from abtest.service import Service
from tests.service.doubles import ENDPOINT


def invoke(service: Service, user: str | None = "u1", **fields) -> dict:
    request = InvocationRequest(endpoint_name=ENDPOINT, user_id=user, data="text", **fields)
    return service.invoke(request).model_dump()


def test_new_user_is_assigned_logged_and_served_by_the_target_variant(service, log, models):
    response = invoke(service)

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


def test_returning_user_keeps_the_variant(service):
    first = invoke(service, "sticky")
    again = [invoke(service, "sticky") for _ in range(20)]

    assert {r["target_variant"] for r in again} == {first["target_variant"]}
    assert {r["assignment"] for r in again} == {"existing"}


def test_event_timestamps_come_from_the_clock_at_each_call(service, log, clock):
    invoke(service, "a")
    clock.advance(90)
    invoke(service, "b")

    first, second = (event["timestamp"] for event in log.events)
    assert first.endswith("Z") or first.endswith("+00:00")
    assert first != second


def test_assignment_expires_after_its_ttl(service, store, clock):
    invoke(service, "ttl-user")
    clock.advance(3600)  # the fixture's assignment_ttl_seconds

    assert store.store.get_assignment(ENDPOINT, "ttl-user", clock.now()) is None
    assert invoke(service, "ttl-user")["assignment"] == "new"


def test_manual_override_serves_that_variant_without_storing_it(service, store, clock, log):
    response = invoke(service, "m", endpoint_variant="Challenger1")

    assert response["assignment"] == "manual"
    assert response["target_variant"] == "Challenger1"
    assert store.store.get_assignment(ENDPOINT, "m", clock.now()) is None
    assert log.events[0]["assignment"] == "manual"


def test_manual_override_must_name_a_variant_of_the_endpoint(service, models):
    with pytest.raises(ConflictError, match="endpoint_variant") as error:
        invoke(service, endpoint_variant="Challenger9")

    assert error.value.status == 409
    assert models.calls == []


def test_unregistered_and_deleted_endpoints_are_not_served(service, clock):
    with pytest.raises(NotFoundError, match="endpoint_name"):
        service.invoke(InvocationRequest(endpoint_name="other", user_id="u", data="x"))

    service.deregister(ENDPOINT)
    with pytest.raises(NotFoundError):
        invoke(service)


def test_model_error_is_a_502_naming_the_variant_and_is_counted(service, models):
    models.failing = {"Champion1", "Challenger1"}

    with pytest.raises(ModelError, match=r"variant (Champion1|Challenger1)") as error:
        invoke(service)

    assert error.value.status == 502
    assert service.telemetry.total("ModelErrors") == 1


def test_unreachable_store_falls_back_to_the_endpoint_weights(log, models, clock):
    class DownStore:
        def __getattr__(self, name):
            def down(*args, **kwargs):
                raise StoreUnavailableError("dynamodb: connection refused")

            return down

    service = Service(DownStore(), events=log, models=models, clock=clock)

    response = invoke(service)

    assert response["assignment"] == "fallback"
    assert response["target_variant"] is None
    assert response["endpoint_variant"] == "Champion1"  # chosen by the endpoint itself
    assert models.calls[0][0] is None  # no TargetVariant
    assert log.events[0]["assignment"] == "fallback"
    assert service.telemetry.total("Fallbacks") == 1


def test_store_round_trips_per_invocation(service, store):
    """New user: one read + one conditional write; returning user: one read; metrics cached."""
    invoke(service, "new-user")
    assert dict(store.calls) == {"get_endpoint": 1, "get_assignment": 1, "create_assignment": 1}

    store.calls.clear()
    invoke(service, "new-user")
    assert dict(store.calls) == {"get_assignment": 1}

    store.calls.clear()
    invoke(service, "second-new-user")
    assert dict(store.calls) == {"get_assignment": 1, "create_assignment": 1}


def test_metrics_record_is_reread_after_the_cache_interval(service, store, clock):
    invoke(service, "a")
    clock.advance(5)
    store.calls.clear()

    invoke(service, "a")

    assert store.calls["get_endpoint"] == 1


def test_concurrent_first_requests_of_one_user_get_one_variant(service, models):
    from concurrent.futures import ThreadPoolExecutor

    # Many distinct users so that both variants are picked somewhere; per user one variant.
    def first_requests(user: str) -> set[str]:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: invoke(service, user), range(8)))
        return {r["target_variant"] for r in responses}

    assert all(len(first_requests(f"racer-{n}")) == 1 for n in range(10))


def test_anonymous_requests_get_a_generated_user_id(service):
    response = invoke(service, None)

    assert response["user_id"]
    assert response["assignment"] == "new"


def test_a_variant_removed_by_reregistration_reassigns_its_users(service, clock):
    from abtest.records import EndpointConfig, VariantConfig
    from tests.service.doubles import Catalog

    for n in range(20):
        invoke(service, f"u{n}")
    service.catalog = Catalog(
        EndpointConfig(ENDPOINT, "ThompsonSampling", 0.1, 0, (VariantConfig("Champion1"),))
    )
    service.register(ENDPOINT)
    models_seen = {invoke(service, f"u{n}")["target_variant"] for n in range(20)}

    assert models_seen == {"Champion1"}
