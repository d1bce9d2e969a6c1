"""Auto-conclude over both stores: traffic until the decision names a winner concludes the
experiment once, with its evidence in the audit log; never a paused one, never twice, and a
person's change racing it wins."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from abtest.adapters.dynamodb_history import DynamoDBHistory
from abtest.adapters.local_models import LocalModelHost
from abtest.adapters.sqlite import SqliteStore
from abtest.adapters.telemetry import CountingTelemetry
from abtest.clock import ManualClock
from abtest.config_types import ExperimentSettings
from abtest.lifecycle import AUTO_CONCLUDE_ACTOR, Action, State
from abtest.records import EndpointConfig, VariantConfig, VariantCounts
from abtest.usecases.admin import ChangeLifecycle, LifecycleChange
from abtest.usecases.aggregate import Aggregate
from abtest.usecases.auto_conclude import AutoConclude
from abtest.usecases.convert import Conversion, Convert
from abtest.usecases.endpoints import EndpointCache
from abtest.usecases.invoke import Invocation, Invoke
from tests.adapters.conftest import METRICS_TABLE
from tests.adapters.test_store_contract import NOW, run_together
from tests.service.doubles import ENDPOINT, EventLog, Models

# Far apart, so that the first aggregation past the decision's 100 users per variant calls
# it: with ~100 users each the difference 0.4 is ~6 standard errors (sd <= 0.5 / sqrt(100)
# per rate), far beyond the always-valid bound at the 5 % level, which at that size is a
# few standard errors (planned for 200 users, where the sequence is tightest).
RATES = {"Champion1": 0.1, "Challenger1": 0.5}
BATCH = 100


def endpoint_config(*, auto_conclude: bool = True) -> EndpointConfig:
    # WeightedSampling: an even split, so both variants reach the decision's 100 users soon
    return EndpointConfig(
        ENDPOINT,
        "WeightedSampling",
        {},
        0,
        (VariantConfig("Champion1"), VariantConfig("Challenger1")),
        ExperimentSettings(auto_conclude=auto_conclude, planned_sample_size=200),
    )


@pytest.fixture
def ports(store) -> SimpleNamespace:
    history = (
        store
        if isinstance(store, SqliteStore)
        else DynamoDBHistory(METRICS_TABLE, client=store.client)
    )
    return SimpleNamespace(
        store=store,
        history=history,
        events=EventLog(),
        models=Models(["Champion1", "Challenger1"]),
        clock=ManualClock(NOW),
        telemetry=CountingTelemetry(),
        rng=random.Random(3),
        assignment_ttl_seconds=3600,
        endpoints=EndpointCache(store, ttl_seconds=5),
        model_host=LocalModelHost(),  # as embedded: a conclusion is done once stored
    )


def experiment(ports, *, auto_conclude: bool = True) -> SimpleNamespace:
    ports.store.register_endpoint(endpoint_config(auto_conclude=auto_conclude), NOW)
    invoke, convert = Invoke.from_ports(ports), Convert.from_ports(ports)
    aggregate = Aggregate.from_ports(ports)
    rng = random.Random(5)
    sent = [0]

    def traffic(users: int = BATCH, prefix: str = "u") -> list:
        """`users` new users, converting at their variant's rate, then one delivery."""
        served = []
        for _ in range(users):
            user = f"{prefix}-{sent[0]}"
            sent[0] += 1
            result = invoke(Invocation(endpoint_name=ENDPOINT, user_id=user, data="x"))
            served.append(result)
            if rng.random() < RATES[result.target_variant]:
                convert(Conversion(ENDPOINT, user, result.inference_id))
        return served

    def deliver() -> str:
        key = ports.events.deliver()
        assert aggregate(ports.events, key).applied
        return key

    return SimpleNamespace(traffic=traffic, deliver=deliver, aggregate=aggregate)


def show(ports):
    endpoint = ports.store.get_endpoint(ENDPOINT)
    return endpoint.lifecycle, ports.store.audit_log(ENDPOINT), endpoint.fresh_figures


@pytest.mark.slow(seconds=8)  # 300 users through moto
def test_traffic_until_a_winner_concludes_once_and_the_winner_serves_everyone(ports):
    run = experiment(ports)
    earlier = []
    # WHEN batches of users come until an aggregation leaves the decision naming a winner
    for _ in range(4):
        earlier += run.traffic()
        key = run.deliver()
        lifecycle, log, figures = show(ports)
        if lifecycle.state is not State.RUNNING:
            break

    # THEN that aggregation concluded it, for the variant the decision named, and says why
    assert (lifecycle.state, lifecycle.winner) == (State.CONCLUDED, "Challenger1")
    assert figures.decision["winner"] == "Challenger1"
    (entry,) = log
    assert (entry.actor, entry.action) == (AUTO_CONCLUDE_ACTOR, "conclude")
    assert entry.details["winner"] == "Challenger1"
    assert "P(best)" in entry.reason and "always-valid p" in entry.reason
    assert entry.reason.endswith(f"; {len(earlier):,} users")  # every user aggregated
    # A repeated delivery of the same object neither counts again nor concludes again
    before = ports.store.get_endpoint(ENDPOINT).variants
    assert not run.aggregate(ports.events, key).applied
    assert ports.store.get_endpoint(ENDPOINT).variants == before
    assert len(ports.store.audit_log(ENDPOINT)) == 1
    # New users and existing ones (of either variant) all get the winner, and a further
    # aggregation of their events leaves it concluded, once
    again = Invoke.from_ports(ports)
    existing = [again(Invocation(ENDPOINT, "x", user_id=r.user_id)) for r in earlier[:40]]
    assert {r.target_variant for r in earlier[:40]} == {"Champion1", "Challenger1"}
    new = run.traffic(30, prefix="new")
    assert {(r.target_variant, r.assignment) for r in [*existing, *new]} == {
        ("Challenger1", "concluded")
    }
    run.deliver()
    assert len(ports.store.audit_log(ENDPOINT)) == 1


def test_without_auto_conclude_a_called_winner_leaves_it_running(ports):
    run = experiment(ports, auto_conclude=False)
    _counts_with_a_clear_winner(ports.store)
    run.traffic(10)
    run.deliver()
    lifecycle, log, figures = show(ports)
    assert figures.decision["winner"] == "Challenger1"
    assert (lifecycle.state, log) == (State.RUNNING, [])


def test_a_paused_experiment_is_not_auto_concluded(ports):
    # GIVEN a person paused the experiment before the evidence was aggregated
    run = experiment(ports)
    run.traffic(10)
    _counts_with_a_clear_winner(ports.store)
    ChangeLifecycle.from_ports(ports)(LifecycleChange(ENDPOINT, Action.PAUSE, actor="alice"))
    # WHEN its users' events are aggregated and the decision names a winner
    run.deliver()
    # THEN it stays paused: the person who paused it decides what comes next
    lifecycle, log, figures = show(ports)
    assert figures.decision["winner"] == "Challenger1"
    assert lifecycle.state is State.PAUSED
    assert [e.action for e in log] == ["pause"]
    # and once they resume, the next aggregation concludes it
    ChangeLifecycle.from_ports(ports)(LifecycleChange(ENDPOINT, Action.RESUME, actor="alice"))
    run.traffic(10)
    run.deliver()
    lifecycle, log, _ = show(ports)
    assert (lifecycle.state, log[-1].actor) == (State.CONCLUDED, AUTO_CONCLUDE_ACTOR)


def test_a_change_made_between_the_read_and_the_conclusion_wins(ports):
    # GIVEN counters whose decision names a winner
    ports.store.register_endpoint(endpoint_config(), NOW)
    _counts_with_a_clear_winner(ports.store)
    person = ChangeLifecycle.from_ports(ports)

    class PausedMeanwhile:
        """The person's pause lands after auto-conclude read the running record."""

        def __call__(self, change):
            person(LifecycleChange(ENDPOINT, Action.PAUSE, actor="alice"))
            return person(change)

    # WHEN auto-conclude runs: it read "running", then the person paused
    assert AutoConclude(store=ports.store, change_lifecycle=PausedMeanwhile())(ENDPOINT) is None

    # THEN the pause stands (concluding from paused would be legal for a person, not here)
    lifecycle, log, _ = show(ports)
    assert lifecycle.state is State.PAUSED
    assert [(e.actor, e.action) for e in log] == [("alice", "pause")]


def test_racing_aggregations_conclude_once(ports):
    ports.store.register_endpoint(endpoint_config(), NOW)
    _counts_with_a_clear_winner(ports.store)
    conclude = AutoConclude.from_ports(ports)

    results = run_together(4, lambda _: conclude(ENDPOINT))

    assert sum(r is not None for r in results) == 1
    lifecycle, log, _ = show(ports)
    assert (lifecycle.state, lifecycle.winner, lifecycle.version) == (
        State.CONCLUDED,
        "Challenger1",
        1,
    )
    assert [e.actor for e in log] == [AUTO_CONCLUDE_ACTOR]


def _counts_with_a_clear_winner(store, endpoint_name: str = ENDPOINT) -> None:
    """500 users each, 10 % against 50 % converted, as if assigned with propensity 1/2."""

    def counts(users: int, converted: int) -> VariantCounts:
        return VariantCounts(
            users,
            converted,
            float(converted),
            users=users,
            converted_users=converted,
            user_reward_sum=float(converted),
            weight_sum=2.0 * users,
            weight_sq_sum=4.0 * users,
            weighted_reward_sum=2.0 * converted,
            weighted_reward_cross_sum=4.0 * converted,
            weighted_reward_sq_sum=4.0 * converted,
        )

    applied = store.apply_counts(
        "obj-1",
        {endpoint_name: {"Champion1": counts(500, 50), "Challenger1": counts(500, 250)}},
        NOW,
    )
    assert applied


def test_a_conclusion_that_failed_is_made_by_the_repeat_of_its_object(ports, monkeypatch):
    # GIVEN counters calling a winner, and the store failing the lifecycle change once
    run = experiment(ports)
    run.traffic(10)
    _counts_with_a_clear_winner(ports.store)
    real = type(ports.store).change_lifecycle
    failures = []

    def fail_once(self, *args):
        if not failures:
            failures.append(args)
            raise ConnectionError("the store went away mid-change")
        return real(self, *args)

    monkeypatch.setattr(type(ports.store), "change_lifecycle", fail_once)
    # WHEN the object is aggregated: its counts are committed, the conclusion is not
    key = run.deliver()
    assert failures and show(ports)[0].state is State.RUNNING
    # THEN a repeat of the object (a redelivery; any later object does the same) concludes it
    assert not run.aggregate(ports.events, key).applied
    lifecycle, log, _ = show(ports)
    assert (lifecycle.state, [e.actor for e in log]) == (State.CONCLUDED, [AUTO_CONCLUDE_ACTOR])
