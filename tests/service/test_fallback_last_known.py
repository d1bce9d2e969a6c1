"""The fallback (the store unreachable) serves by the endpoint as this process last read it,
however long ago: a concluded endpoint's winner, a paused one's champion, else a draw by
its last allocation over the variants still serving, logged with the draw's propensity.
(A process that never read the endpoint leaves the choice to the host: test_invoke.py.)"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from abtest import guardrails
from abtest.config_types import ExperimentSettings
from abtest.errors import ConflictError, ModelError, StoreUnavailableError
from abtest.lifecycle import Action
from abtest.records import EndpointConfig, VariantConfig
from abtest.usecases.admin import ChangeLifecycle, LifecycleChange
from abtest.usecases.aggregate import Aggregate
from abtest.usecases.endpoints import EndpointCache
from abtest.usecases.invoke import FALLBACK_STRATEGY, Invocation, InvocationResult, Invoke
from abtest.usecases.register import Register
from tests.service.doubles import ENDPOINT, Catalog, CountingStore, Models

VARIANTS = ("Champion1", "Challenger1", "Challenger2")


class Outage:
    """The store, until `down`: then every call fails as an unreachable store's does."""

    def __init__(self, store: CountingStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailableError("sqlite: unable to open database file")
            return method(*args, **kwargs)

        return call


def endpoint_config(
    strategy: str = "ThompsonSampling",
    weights: tuple[float, ...] = (1.0, 1.0, 1.0),
    settings: ExperimentSettings | None = None,
) -> EndpointConfig:
    return EndpointConfig(
        ENDPOINT,
        strategy,
        {},
        0,
        tuple(VariantConfig(name, weight) for name, weight in zip(VARIANTS, weights, strict=True)),
        settings or ExperimentSettings(),
    )


@pytest.fixture
def serve(ports, store) -> Callable[[EndpointConfig], SimpleNamespace]:
    """The use cases over a store that can go down, the endpoint registered with `config`."""

    def build(config: EndpointConfig) -> SimpleNamespace:
        outage = Outage(store)
        ports.store = outage
        ports.endpoints = EndpointCache(outage, ttl_seconds=5)
        ports.catalog = Catalog(config)
        ports.models = Models(list(VARIANTS))
        Register.from_ports(ports).register(ENDPOINT)
        return SimpleNamespace(
            outage=outage,
            models=ports.models,
            invoke=Invoke.from_ports(ports),
            change=ChangeLifecycle.from_ports(ports),
            aggregate=Aggregate.from_ports(ports),
        )

    return build


def invoke(service: SimpleNamespace, user: str, **fields: Any) -> InvocationResult:
    return service.invoke(Invocation(endpoint_name=ENDPOINT, user_id=user, data="x", **fields))


def change(service: SimpleNamespace, action: Action, **fields: Any) -> None:
    service.change(LifecycleChange(ENDPOINT, action, **fields))


def test_after_a_conclusion_and_an_outage_the_winner_serves_every_request(
    serve, clock, log, telemetry
) -> None:
    # GIVEN an endpoint concluded for its second challenger, then its store down for an
    # hour (the cached record's interval long past: every re-read fails)
    service = serve(endpoint_config())
    change(service, Action.CONCLUDE, winner="Challenger2")
    service.outage.down = True
    clock.advance(3600)

    # WHEN users arrive
    answers = [invoke(service, f"u{n}") for n in range(50)]

    # THEN the winner serves each, named and logged with its propensity, 1
    assert {(a.target_variant, a.endpoint_variant, a.propensity) for a in answers} == {
        ("Challenger2", "Challenger2", 1.0)
    }
    assert {(a.assignment, a.strategy) for a in answers} == {("fallback", FALLBACK_STRATEGY)}
    assert {variant for variant, _, _ in service.models.calls} == {"Challenger2"}
    assert {(e["variant_name"], e["propensity"], e["assignment"]) for e in log.events} == {
        ("Challenger2", 1.0, "fallback")
    }
    assert telemetry.totals()["Fallbacks"] == 50
    # AND once the store is back, aggregation counts them as calls, never as trials
    service.outage.down = False
    counts = service.aggregate(log, log.deliver()).counts[ENDPOINT]["Challenger2"]
    assert (counts.invocation_count, counts.users, guardrails.model_calls(counts)) == (0, 0, 50)


def test_a_retired_or_demoted_variant_gets_no_fallback_traffic(serve, log) -> None:
    # GIVEN a guardrail that demotes Challenger1 (every call of it failed) and Challenger2
    # retired by a person
    service = serve(endpoint_config(settings=ExperimentSettings(max_error_rate=0.05)))
    service.models.failing = {"Challenger1"}
    for n in range(100):
        with pytest.raises(ModelError):
            invoke(service, f"m{n}", endpoint_variant="Challenger1")
    service.aggregate(log, log.deliver())
    change(service, Action.RETIRE_VARIANT, variant="Challenger2", reason="too slow")

    # WHEN the store goes down and users arrive
    service.outage.down = True
    answers = [invoke(service, f"u{n}") for n in range(200)]

    # THEN the one variant still serving gets them all, with certainty
    assert {(a.target_variant, a.propensity) for a in answers} == {("Champion1", 1.0)}
    assert {e["variant_name"] for e in log.events[100:]} == {"Champion1"}


def test_the_logged_propensities_are_the_last_allocation(serve, log) -> None:
    # GIVEN fixed weights 1:2:5 (an allocation of 1/8, 2/8, 5/8), read by one request
    service = serve(endpoint_config("WeightedSampling", weights=(1.0, 2.0, 5.0)))
    allocation = dict(zip(VARIANTS, (0.125, 0.25, 0.625), strict=True))
    invoke(service, "before")
    service.outage.down = True

    # WHEN 2,000 users arrive while the store is down
    n = 2_000
    answers = [invoke(service, f"u{i}") for i in range(n)]

    # THEN each answer and each logged line carries the allocation's probability of the
    # variant that served
    assert all(a.propensity == allocation[a.target_variant] for a in answers)
    fallbacks = [e for e in log.events if e["assignment"] == "fallback"]
    assert len(fallbacks) == n
    assert all(e["propensity"] == allocation[e["variant_name"]] for e in fallbacks)
    # AND the draws follow it: each share within 5 binomial standard errors
    served = Counter(a.target_variant for a in answers)
    for variant, p in allocation.items():
        assert abs(served[variant] / n - p) < 5 * math.sqrt(p * (1 - p) / n), served


def test_a_paused_endpoint_falls_back_to_its_champion(serve) -> None:
    service = serve(endpoint_config())
    change(service, Action.PAUSE, reason="retraining")
    service.outage.down = True

    answers = [invoke(service, f"u{n}") for n in range(50)]

    assert {(a.target_variant, a.propensity, a.assignment) for a in answers} == {
        ("Champion1", 1.0, "fallback")
    }


def test_a_manual_override_is_honoured_by_the_last_known_record(serve, telemetry) -> None:
    # GIVEN an endpoint read once, then its store down
    service = serve(endpoint_config())
    invoke(service, "before")
    service.outage.down = True

    # WHEN a request names a variant, and another names none on the endpoint
    manual = invoke(service, "m", endpoint_variant="Challenger1")
    with pytest.raises(ConflictError, match="endpoint_variant") as unknown:
        invoke(service, "m", endpoint_variant="Challenger9")

    # THEN the named one serves as when the store is up (nothing is stored either way), and
    # the unknown one is the usual 409; neither is a fallback
    assert (manual.target_variant, manual.assignment, manual.propensity) == (
        "Challenger1",
        "manual",
        1.0,
    )
    assert unknown.value.status == 409
    assert telemetry.totals().get("Fallbacks", 0) == 0


def test_a_failing_model_on_the_fallback_is_logged_for_its_guardrail(serve, log) -> None:
    # GIVEN a concluded endpoint whose winner's model fails, its store down
    service = serve(endpoint_config())
    change(service, Action.CONCLUDE, winner="Challenger1")
    service.models.failing = {"Challenger1"}
    service.outage.down = True

    with pytest.raises(ModelError, match="Challenger1"):
        invoke(service, "u")

    # THEN the failed call is logged against the variant that failed
    [event] = log.events
    assert (event["variant_name"], event["outcome"], event["assignment"]) == (
        "Challenger1",
        "error",
        "fallback",
    )


def test_a_returning_user_keeps_their_variant_through_an_outage(serve, clock, log) -> None:
    # GIVEN users assigned while the store was up, then the store down for ten minutes,
    # long past the cached record's 5 s (their assignments live an hour here)
    service = serve(endpoint_config())
    before = {f"u{n}": invoke(service, f"u{n}") for n in range(30)}
    assert {a.assignment for a in before.values()} == {"new"}
    service.outage.down = True
    clock.advance(600)

    # WHEN they come back, and a user nobody saw arrives
    again = {user: invoke(service, user) for user in before}
    stranger = invoke(service, "stranger")

    # THEN each is served their own variant, with the propensity they were drawn with, as
    # the existing assignment it is; the stranger gets a fallback draw
    assert {u: (a.target_variant, a.propensity) for u, a in again.items()} == {
        u: (a.target_variant, a.propensity) for u, a in before.items()
    }
    assert {a.assignment for a in again.values()} == {"existing"}
    assert stranger.assignment == "fallback"
    # AND once the store is back their calls count as trials' invocations, as any
    # returning user's do
    service.outage.down = False
    counts = service.aggregate(log, log.deliver()).counts[ENDPOINT]
    assert sum(c.invocation_count for c in counts.values()) == 60
    assert sum(c.users for c in counts.values()) == 30


def test_a_returning_user_of_a_retired_variant_is_not_served_it_in_an_outage(serve) -> None:
    service = serve(endpoint_config("WeightedSampling", weights=(0.0, 0.0, 1.0)))
    assert invoke(service, "u").target_variant == "Challenger2"
    change(service, Action.RETIRE_VARIANT, variant="Challenger2", reason="too slow")
    service.outage.down = True

    answer = invoke(service, "u")

    assert (answer.assignment, answer.target_variant) != ("existing", "Challenger2")
    assert answer.target_variant in ("Champion1", "Challenger1")


def test_a_process_that_registered_the_endpoint_serves_by_it_in_an_outage_before_any_request(
    serve,
) -> None:
    # Registered here (as the embedded server does at its start), then the store goes down
    # before the first request: the process has read the record, so it does not leave the
    # choice to the host (no variant named, no propensity) but draws by what it read.
    service = serve(endpoint_config("WeightedSampling", weights=(0.0, 1.0, 1.0)))
    service.outage.down = True

    answers = [invoke(service, f"u{i}") for i in range(40)]

    assert {a.assignment for a in answers} == {"fallback"}
    assert {a.target_variant for a in answers} == {"Challenger1", "Challenger2"}
    assert {a.propensity for a in answers} == {0.5}


def test_a_reread_that_fails_keeps_the_record_it_would_have_replaced(serve, clock) -> None:
    # Registration reads the record back; should the store go down just then, the record read
    # before stays what the fallback serves by (never nothing, leaving it to the host).
    service = serve(endpoint_config("WeightedSampling", weights=(0.0, 1.0, 1.0)))
    service.outage.down = True

    with pytest.raises(StoreUnavailableError):
        service.invoke.endpoints.reread(ENDPOINT, clock.now())
    answer = invoke(service, "u")

    assert (answer.assignment, answer.propensity) == ("fallback", 0.5)
    assert answer.target_variant in ("Challenger1", "Challenger2")
