"""Concluding where the model host keeps weights (SageMaker): the winner is promoted there,
and a promotion that fails is shown pending, never done, until a conclusion finishes it."""

from __future__ import annotations

import pytest

from abtest.errors import ConflictError, ModelHostError, ModelHostUnavailableError
from abtest.lifecycle import Action, Promotion, State
from abtest.usecases.admin import ChangeLifecycle, LifecycleChange, ShowEndpoint
from abtest.usecases.invoke import Invocation
from abtest.usecases.register import Register
from tests.service.doubles import ENDPOINT


class Host:
    """A model host with weights: records each promotion, or fails with the errors queued."""

    keeps_weights = True

    def __init__(self) -> None:
        self.weights = {"Champion1": 0.5, "Challenger1": 0.5}
        self.calls: list[tuple[str, str]] = []
        self.failures: list[Exception] = []

    def promote(self, endpoint_name: str, winner: str) -> dict[str, float]:
        self.calls.append((endpoint_name, winner))
        if self.failures:
            raise self.failures.pop(0)
        self.weights = {name: 1.0 if name == winner else 0.0 for name in self.weights}
        return dict(self.weights)


@pytest.fixture
def host(ports) -> Host:
    ports.model_host = Host()
    return ports.model_host


@pytest.fixture
def conclude(ports, usecases, host):
    change = ChangeLifecycle.from_ports(ports)

    def run(winner: str | None = "Challenger1", **fields):
        return change(LifecycleChange(ENDPOINT, Action.CONCLUDE, winner=winner, **fields))

    return run


def shown(ports):
    return ShowEndpoint.from_ports(ports)(ENDPOINT)


def test_conclude_promotes_the_winner_and_records_both_steps(conclude, host, ports, usecases):
    view = conclude(actor="carol", reason="clear win")

    assert host.calls == [(ENDPOINT, "Challenger1")]
    assert host.weights == {"Champion1": 0.0, "Challenger1": 1.0}
    lifecycle = view.endpoint.lifecycle
    assert (lifecycle.state, lifecycle.winner, lifecycle.promotion) == (
        State.CONCLUDED,
        "Challenger1",
        Promotion.DONE,
    )
    assert lifecycle.allowed_actions == ()
    log = shown(ports).audit_log
    assert [(e.actor, e.action, e.reason) for e in log] == [
        ("carol", "conclude", "clear win"),
        ("carol", "promote", "clear win"),
    ]
    assert log[0].details["promotion"] == "pending"
    assert log[1].details == {
        "winner": "Challenger1",
        "promotion": "done",
        "version": 2,
        "weights": {"Champion1": 0.0, "Challenger1": 1.0},
    }
    served = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))
    assert (served.endpoint_variant, served.assignment) == ("Challenger1", "concluded")


@pytest.mark.parametrize(
    "failure",
    [
        ModelHostUnavailableError("UpdateEndpointWeightsAndCapacities on X failed: Throttling"),
        ModelHostError("UpdateEndpointWeightsAndCapacities on X failed: AccessDeniedException"),
    ],
)
def test_a_failed_promotion_is_answered_and_left_pending_then_a_retry_finishes_it(
    conclude, host, ports, usecases, failure
):
    host.failures.append(failure)

    with pytest.raises(type(failure)) as raised:
        conclude()

    # THEN the error names the call and says what is left to do; the state says the same
    assert "failed" in raised.value.message
    assert "promotion in the model host pending: conclude again" in raised.value.message
    assert {"field": "promotion", "message": "pending"} in raised.value.details
    lifecycle = shown(ports).endpoint.lifecycle
    assert (lifecycle.state, lifecycle.promotion) == (State.CONCLUDED, Promotion.PENDING)
    assert lifecycle.allowed_actions == (Action.CONCLUDE,)
    assert host.weights == {"Champion1": 0.5, "Challenger1": 0.5}
    # The API serves the winner already: it is stored concluded
    served = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))
    assert served.endpoint_variant == "Challenger1"

    # WHEN concluded again, with no winner named THEN the stored winner is promoted
    view = conclude(winner=None)

    assert view.endpoint.lifecycle.promotion is Promotion.DONE
    assert host.calls == [(ENDPOINT, "Challenger1")] * 2
    assert [e.action for e in shown(ports).audit_log] == ["conclude", "promote"]
    # AND once done, concluding again is the 409 of a final state
    with pytest.raises(ConflictError, match="is concluded: cannot conclude; allowed: none"):
        conclude()


def test_while_pending_only_concluding_again_with_the_same_winner_is_allowed(conclude, host, ports):
    host.failures.append(ModelHostUnavailableError("throttled"))
    with pytest.raises(ModelHostUnavailableError):
        conclude()

    with pytest.raises(ConflictError, match="concluded with winner 'Challenger1'"):
        conclude(winner="Champion1")
    change = ChangeLifecycle.from_ports(ports)
    for action in (Action.PAUSE, Action.RESUME):
        with pytest.raises(ConflictError, match="allowed: conclude again, to finish promoting"):
            change(LifecycleChange(ENDPOINT, action))
    with pytest.raises(ConflictError, match="cannot retire a variant; allowed: conclude again"):
        change(LifecycleChange(ENDPOINT, Action.RETIRE_VARIANT, variant="Champion1"))

    assert host.calls == [(ENDPOINT, "Challenger1")]  # none of those called the host
    assert shown(ports).endpoint.lifecycle.promotion is Promotion.PENDING


def test_a_crash_after_the_weights_were_set_leaves_pending_and_a_retry_finishes_it(
    conclude, host, ports, store
):
    # GIVEN the process dies between the host's answer and the `done` write
    real = store.store.change_lifecycle
    writes = []

    def crash_on_done(name, expected, new, entry, *rest):
        writes.append(entry.action)
        if new.promotion is Promotion.DONE:
            raise RuntimeError("the function timed out")
        return real(name, expected, new, entry, *rest)

    store.store.change_lifecycle = crash_on_done
    try:
        with pytest.raises(RuntimeError):
            conclude()
    finally:
        store.store.change_lifecycle = real

    # THEN the state claims no more than was stored: concluded, promotion pending
    assert writes == ["conclude", "promote"]
    assert shown(ports).endpoint.lifecycle.promotion is Promotion.PENDING
    # AND a retry promotes again (idempotent at the host) and marks it done
    assert conclude().endpoint.lifecycle.promotion is Promotion.DONE


def test_two_retries_racing_both_end_done(conclude, host, ports, store):
    host.failures.append(ModelHostUnavailableError("throttled"))
    with pytest.raises(ModelHostUnavailableError):
        conclude()
    # GIVEN another retry that finishes between this one's host call and its write
    real = store.store.change_lifecycle

    def other_first(name, expected, new, entry, *rest):
        store.store.change_lifecycle = real
        ChangeLifecycle.from_ports(ports)(LifecycleChange(ENDPOINT, Action.CONCLUDE))
        return real(name, expected, new, entry, *rest)

    store.store.change_lifecycle = other_first
    try:
        view = conclude()
    finally:
        store.store.change_lifecycle = real

    assert view.endpoint.lifecycle.promotion is Promotion.DONE
    assert [e.action for e in shown(ports).audit_log] == ["conclude", "promote"]


def test_pause_and_retire_never_call_the_host(ports, usecases, host):
    change = ChangeLifecycle.from_ports(ports)
    change(LifecycleChange(ENDPOINT, Action.PAUSE))
    change(LifecycleChange(ENDPOINT, Action.RETIRE_VARIANT, variant="Challenger1"))

    assert host.calls == []
    assert shown(ports).endpoint.lifecycle.promotion is None


def test_reregistration_keeps_the_concluded_winner_and_finishes_a_pending_promotion(
    conclude, host, ports, usecases
):
    registration = Register.from_ports(ports)  # with the host that keeps weights
    # GIVEN a promotion that failed, and a registration while the host still refuses
    host.failures += [ModelHostUnavailableError("endpoint Updating")] * 2
    with pytest.raises(ModelHostUnavailableError):
        conclude()
    registration.register(ENDPOINT)
    assert shown(ports).endpoint.lifecycle.promotion is Promotion.PENDING

    # WHEN registered again (SageMaker's endpoint back in service) THEN it is finished
    endpoint = registration.register(ENDPOINT)

    assert endpoint.lifecycle.promotion is Promotion.DONE
    assert host.calls == [(ENDPOINT, "Challenger1")] * 3
    log = shown(ports).audit_log
    assert [(e.actor, e.action) for e in log] == [
        ("local", "conclude"),
        ("registration", "promote"),
    ]
    # AND registered again once more (reading the host's weights 1/0), nothing changes
    registration.register(ENDPOINT)
    lifecycle = shown(ports).endpoint.lifecycle
    assert (lifecycle.state, lifecycle.winner, lifecycle.promotion) == (
        State.CONCLUDED,
        "Challenger1",
        Promotion.DONE,
    )
    assert len(host.calls) == 3
    served = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="late", data="x"))
    assert served.endpoint_variant == "Challenger1"
