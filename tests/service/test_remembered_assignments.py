"""Returning users' assignments remembered by the endpoint entry: the store still decides.

Two processes (two sets of use cases with their own endpoint caches, one SQLite store,
one clock) stand for `abtest serve --workers` or two Lambda containers. What one changes
the other sees when its endpoint entry is next read (the cache's 5 s): the same bound
the endpoint itself always had.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from abtest.lifecycle import Action
from abtest.usecases import endpoints as endpoints_module
from abtest.usecases.admin import ChangeLifecycle, LifecycleChange
from abtest.usecases.endpoints import EndpointCache
from abtest.usecases.invoke import Invocation, Invoke
from tests.service.doubles import ENDPOINT


@pytest.fixture
def other(ports, usecases) -> SimpleNamespace:
    """A second process over the same store: its own endpoint cache and random stream."""
    its_ports = SimpleNamespace(
        **{**vars(ports), "endpoints": EndpointCache(ports.store, ttl_seconds=5)},
    )
    its_ports.rng = random.Random(99)
    return SimpleNamespace(
        invoke=Invoke.from_ports(its_ports),
        change=lambda action, **fields: ChangeLifecycle.from_ports(its_ports)(
            LifecycleChange(ENDPOINT, action, **fields)
        ),
    )


def invoke(invoker, user: str):
    return invoker(Invocation(endpoint_name=ENDPOINT, user_id=user, data="x"))


def test_a_remembered_assignment_answers_as_the_stored_one(usecases, store) -> None:
    first = invoke(usecases.invoke, "u")
    store.calls.clear()
    again = invoke(usecases.invoke, "u")

    assert store.calls == {}  # remembered: no store read
    stored = store.get_assignment(ENDPOINT, "u", 0)
    assert (again.target_variant, again.strategy, again.propensity, again.assignment) == (
        stored.variant_name,
        stored.strategy,
        stored.propensity,
        "existing",
    )
    assert first.target_variant == again.target_variant


def test_a_user_another_process_assigned_first_gets_its_variant_here(usecases, other) -> None:
    """The store's conditional create decides; what is remembered is the store's answer."""
    for n in range(30):
        user = f"raced-{n}"
        there = invoke(other.invoke, user).target_variant
        assert invoke(usecases.invoke, user).target_variant == there
        assert invoke(usecases.invoke, user).target_variant == there  # and remembered so


def test_a_variant_retired_elsewhere_moves_its_users_here_within_the_entry_interval(
    usecases, other, clock
) -> None:
    assigned = {u: invoke(usecases.invoke, u).target_variant for u in map(str, range(20))}
    moved = [u for u, variant in assigned.items() if variant == "Challenger1"]
    assert moved

    other.change(Action.RETIRE_VARIANT, variant="Challenger1", reason="slow")
    clock.advance(5)  # this process reads its endpoint entry again

    assert {invoke(usecases.invoke, u).target_variant for u in moved} == {"Champion1"}
    # and the other process agrees: one assignment per user, the store's
    assert {invoke(other.invoke, u).target_variant for u in moved} == {"Champion1"}


def test_a_winner_declared_elsewhere_serves_everyone_here_within_the_entry_interval(
    usecases, other, clock
) -> None:
    users = [str(n) for n in range(20)]
    for user in users:
        invoke(usecases.invoke, user)

    other.change(Action.CONCLUDE, winner="Challenger1")
    clock.advance(5)

    served = {(r.endpoint_variant, r.assignment) for r in map(
        lambda u: invoke(usecases.invoke, u), users
    )}  # fmt: skip
    assert served == {("Challenger1", "concluded")}


def test_an_expired_assignment_is_not_answered_from_memory(usecases, ports, store, clock) -> None:
    ports.assignment_ttl_seconds = 3  # shorter than the endpoint entry's 5 s
    usecases.invoke = Invoke.from_ports(ports)
    invoke(usecases.invoke, "u")

    clock.advance(3)  # the assignment's ttl, the endpoint entry still current
    store.calls.clear()
    again = invoke(usecases.invoke, "u")

    assert again.assignment == "new"
    assert store.calls == {"get_assignment": 1, "create_assignment": 1}


def test_what_an_entry_remembers_is_bounded(usecases, ports, monkeypatch, clock) -> None:
    monkeypatch.setattr(endpoints_module, "MAX_REMEMBERED_ASSIGNMENTS", 5)
    for n in range(23):
        invoke(usecases.invoke, f"many-{n}")
        remembered = ports.endpoints.served(ENDPOINT, clock.now()).assignments
        assert 1 <= len(remembered) <= 5


def test_counts_aggregated_are_read_at_once_and_the_remembered_users_stay_remembered(
    usecases, ports, store, clock
) -> None:
    """Aggregation `recount`s: the next request reads the record again (its new counters and
    allocation) but answers returning users from memory, as counters change no assignment."""
    users = [f"kept-{n}" for n in range(10)]
    for user in users:
        invoke(usecases.invoke, user)
    before = ports.endpoints.served(ENDPOINT, clock.now())

    ports.endpoints.recount(ENDPOINT)  # as Aggregate does after it counted an object
    store.calls.clear()
    for user in users:
        assert invoke(usecases.invoke, user).assignment == "existing"

    assert store.calls == {"get_endpoint": 1}  # the record once, no assignment read
    after = ports.endpoints.served(ENDPOINT, clock.now())
    assert after is not before and after.assignments is before.assignments


def test_remembered_users_still_go_when_the_entry_first_read_expires(
    usecases, ports, store, clock
) -> None:
    """A recount keeps the entry's first read time: what it remembers is never older than
    the entry interval, as without aggregation."""
    invoke(usecases.invoke, "u")
    clock.advance(4)
    ports.endpoints.recount(ENDPOINT)
    invoke(usecases.invoke, "u")  # the record read again, "u" remembered
    clock.advance(1)  # 5 s after the entry's first read
    store.calls.clear()

    invoke(usecases.invoke, "u")

    assert store.calls == {"get_endpoint": 1, "get_assignment": 1}


def test_aggregating_recounts_the_endpoint_and_keeps_its_remembered_users(
    usecases, ports, store, log, clock
) -> None:
    users = [f"a-{n}" for n in range(10)]
    for user in users:
        invoke(usecases.invoke, user)
    counted_before = ports.endpoints.served(ENDPOINT, clock.now()).endpoint

    usecases.aggregate(log, log.deliver())
    store.calls.clear()
    for user in users:
        invoke(usecases.invoke, user)

    assert store.calls["get_assignment"] == 0
    counted = ports.endpoints.served(ENDPOINT, clock.now()).endpoint
    assert sum(v.counts.invocation_count for v in counted.variants) == len(users)
    assert sum(v.counts.invocation_count for v in counted_before.variants) == 0
