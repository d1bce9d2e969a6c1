"""The experiment lifecycle as the use cases run it: transitions, the audit log, and what
paused and concluded endpoints serve."""

from __future__ import annotations

import pytest

from abtest.errors import ConflictError, NotFoundError
from abtest.event_reading import (
    event_delta,
)
from abtest.lifecycle import Action, Lifecycle, State
from abtest.records import VariantCounts
from abtest.usecases.admin import ChangeLifecycle, LifecycleChange, ListEndpoints, ShowEndpoint
from abtest.usecases.convert import Conversion
from abtest.usecases.invoke import Invocation
from bandit.metrics import BINARY
from tests.service.doubles import ENDPOINT, Catalog, config


@pytest.fixture
def change(ports, usecases):
    change_lifecycle = ChangeLifecycle.from_ports(ports)

    def run(action: Action, **fields):
        return change_lifecycle(LifecycleChange(ENDPOINT, action, **fields))

    return run


def counted(events) -> dict[str, VariantCounts]:
    """What aggregation adds per variant for these events (logged-only ones left out)."""
    totals: dict[str, VariantCounts] = {}
    for event in events:
        counted = event_delta(event, lambda endpoint, variant: BINARY)
        if counted.delta is not None:
            variant = counted.variant_name
            totals[variant] = totals.get(variant, VariantCounts()) + counted.delta
    return totals


def invoke(usecases, user: str, **fields):
    return usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id=user, data="x", **fields))


def test_pause_resume_conclude_are_recorded_with_actor_reason_and_time(change, clock, ports):
    change(Action.PAUSE, actor="alice", reason="model retraining")
    clock.advance(60)
    change(Action.RESUME, actor="bob")
    view = change(Action.CONCLUDE, actor="carol", winner="Challenger1", reason="clear win")

    assert view.endpoint.lifecycle.state is State.CONCLUDED
    assert view.endpoint.lifecycle.winner == "Challenger1"
    log = ShowEndpoint.from_ports(ports)(ENDPOINT).audit_log
    assert [(e.actor, e.action, e.reason) for e in log] == [
        ("alice", "pause", "model retraining"),
        ("bob", "resume", ""),
        ("carol", "conclude", "clear win"),
    ]
    assert log[1].at - log[0].at == 60
    assert log[2].details == {
        "from": "running",
        "to": "concluded",
        "version": 3,
        "winner": "Challenger1",
    }


@pytest.mark.parametrize(
    ("before", "action", "allowed"),
    [
        ([], Action.RESUME, "pause, conclude"),
        ([Action.PAUSE], Action.PAUSE, "resume, conclude"),
        ([Action.CONCLUDE], Action.PAUSE, "none"),
        ([Action.CONCLUDE], Action.RESUME, "none"),
        ([Action.CONCLUDE], Action.CONCLUDE, "none"),
    ],
)
def test_illegal_transitions_are_409_naming_the_state_and_the_moves(
    change, ports, before, action, allowed
):
    for step in before:
        change(step, winner="Champion1" if step is Action.CONCLUDE else None)
    state = ShowEndpoint.from_ports(ports)(ENDPOINT).endpoint.lifecycle.state

    with pytest.raises(ConflictError, match=f"is {state}: cannot {action}; allowed: {allowed}"):
        change(action, winner="Champion1")

    assert len(ShowEndpoint.from_ports(ports)(ENDPOINT).audit_log) == len(before)


def test_conclude_without_a_winner_takes_the_decisions_or_is_409(change, usecases, store):
    with pytest.raises(ConflictError, match="winner: the decision names none yet"):
        change(Action.CONCLUDE)
    # Counters where the challenger is clearly better
    store.apply_counts(
        "obj-1",
        {
            ENDPOINT: {
                "Champion1": VariantCounts(
                    5000, 250, 250.0, users=5000, converted_users=250, user_reward_sum=250.0
                ),
                "Challenger1": VariantCounts(
                    5000, 500, 500.0, users=5000, converted_users=500, user_reward_sum=500.0
                ),
            }
        },
        0.0,
    )

    view = change(Action.CONCLUDE)

    assert view.endpoint.lifecycle.winner == "Challenger1"


def test_conclude_naming_an_unknown_variant_is_409_naming_winner(change):
    with pytest.raises(ConflictError, match="winner: 'Nope' is not a variant"):
        change(Action.CONCLUDE, winner="Nope")


def test_concluding_with_a_retired_variant_is_409_naming_winner(change, ports):
    # A retired variant serves no one, and one the config dropped has no model any more:
    # as the winner, every call of the endpoint, which can never move on, would fail.
    change(Action.RETIRE_VARIANT, variant="Challenger1")

    with pytest.raises(ConflictError, match="winner: 'Challenger1' is retired") as error:
        change(Action.CONCLUDE, winner="Challenger1")

    assert error.value.details == [{"field": "winner", "message": "retired"}]
    assert ShowEndpoint.from_ports(ports)(ENDPOINT).endpoint.lifecycle.state is State.RUNNING


@pytest.mark.parametrize(
    ("action", "fields"),
    [
        (Action.CONCLUDE, {}),  # not "the decision names none yet; name one"
        (Action.RETIRE_VARIANT, {"variant": "Champion1"}),  # not "the last serving variant"
        (Action.REINSTATE, {"variant": "Champion1"}),  # not "not demoted"
        (Action.WEIGHTS, {"weights": {"Champion1": 2.0}}),  # not "allocates by ..."
    ],
)
def test_a_concluded_endpoint_refuses_a_change_by_its_state_whatever_the_input(
    change, ports, action, fields
):
    # No input makes a change of a concluded endpoint legal: the 409 says so, not that
    # another winner or variant would do.
    change(Action.RETIRE_VARIANT, variant="Challenger1")
    change(Action.CONCLUDE, winner="Champion1")

    with pytest.raises(ConflictError, match=f"'{ENDPOINT}' is concluded: cannot") as error:
        change(action, **fields)

    assert error.value.details[0]["field"] == "state"
    assert len(ShowEndpoint.from_ports(ports)(ENDPOINT).audit_log) == 2


def test_changes_of_an_unknown_endpoint_are_404(ports):
    with pytest.raises(NotFoundError, match="endpoint_name"):
        ChangeLifecycle.from_ports(ports)(LifecycleChange("other", Action.PAUSE))


def test_the_loser_of_a_race_is_409_and_the_state_is_the_winners(change, ports, store):
    # GIVEN a pause stored between this conclude's read and its write
    real = store.store.change_lifecycle

    def pause_first(name, expected, new, entry, *rest):
        store.store.change_lifecycle = real  # once: the pause itself goes straight through
        assert ChangeLifecycle.from_ports(ports)(LifecycleChange(ENDPOINT, Action.PAUSE))
        return real(name, expected, new, entry, *rest)

    store.store.change_lifecycle = pause_first
    try:
        with pytest.raises(ConflictError, match="changed by someone else meanwhile"):
            change(Action.CONCLUDE, winner="Champion1")
    finally:
        store.store.change_lifecycle = real

    assert ShowEndpoint.from_ports(ports)(ENDPOINT).endpoint.lifecycle.state is State.PAUSED


def test_paused_new_users_get_the_champion_existing_ones_keep_their_variant(change, usecases, log):
    existing = {user: invoke(usecases, user).target_variant for user in map(str, range(20))}
    assert set(existing.values()) == {"Champion1", "Challenger1"}

    change(Action.PAUSE)

    again = {user: invoke(usecases, user).target_variant for user in existing}
    new = [invoke(usecases, f"new-{i}") for i in range(10)]
    assert again == existing
    assert {(r.target_variant, r.strategy, r.propensity) for r in new} == {
        ("Champion1", "Paused", 1.0)
    }
    # Events still aggregate: every invocation is logged and counted
    assert sum(c.invocation_count for c in counted(log.events).values()) == 50


def test_users_a_pause_or_conclusion_assigned_are_no_trials_of_the_experiment(
    change, usecases, log
):
    # GIVEN 20 users the experiment assigned, half of whom converted, counted
    for user in map(str, range(20)):
        invoke(usecases, user)
        if int(user) % 2:
            usecases.convert(Conversion(endpoint_name=ENDPOINT, user_id=user))
    usecases.aggregate(log, log.deliver())
    before = usecases.stats(ENDPOINT).endpoint.variants

    # WHEN the endpoint is paused and 10 new users come and convert, then it is concluded
    # and 5 more come and convert
    change(Action.PAUSE)
    paused = [invoke(usecases, f"paused-{i}") for i in range(10)]
    change(Action.CONCLUDE, winner="Challenger1")
    concluded = [invoke(usecases, f"after-{i}") for i in range(5)]
    for result in [*paused, *concluded]:
        usecases.convert(Conversion(endpoint_name=ENDPOINT, user_id=result.user_id))
    usecases.aggregate(log, log.deliver())
    after = usecases.stats(ENDPOINT).endpoint.variants

    # THEN their invocations and conversions count, but no user of the experiment's does
    # (the champion's certainty while paused would otherwise weigh in the estimates and
    # break the sample-ratio check, which needs every variant possible for every user)
    assert {r.assignment for r in paused} == {"paused"}
    assert {r.assignment for r in concluded} == {"concluded"}
    total = lambda variants, name: sum(getattr(v.counts, name) for v in variants)  # noqa: E731
    for name in ("users", "converted_users", "weight_sum", "weighted_reward_sum"):
        assert total(after, name) == pytest.approx(total(before, name)), name
    assert total(after, "invocation_count") == total(before, "invocation_count") + 15
    assert total(after, "conversion_count") == total(before, "conversion_count") + 15


def test_paused_weighted_sampling_keeps_its_fixed_weights(ports, store):
    ports.catalog = Catalog(config("WeightedSampling"))
    from abtest.usecases.invoke import Invoke
    from abtest.usecases.register import Register

    Register.from_ports(ports).register(ENDPOINT)
    ChangeLifecycle.from_ports(ports)(LifecycleChange(ENDPOINT, Action.PAUSE))
    invoke_ = Invoke.from_ports(ports)
    served = [
        invoke_(Invocation(endpoint_name=ENDPOINT, user_id=str(i), data="x")) for i in range(40)
    ]

    assert {r.target_variant for r in served} == {"Champion1", "Challenger1"}
    assert {(r.strategy, r.propensity) for r in served} == {("WeightedSampling", 0.5)}


def test_concluded_serves_the_winner_to_everyone_and_credits_it(change, usecases, log):
    existing = {user: invoke(usecases, user).target_variant for user in map(str, range(20))}
    losers = [user for user, variant in existing.items() if variant == "Champion1"]
    assert losers

    change(Action.CONCLUDE, winner="Challenger1")

    served = [invoke(usecases, user) for user in [*existing, "new-1", "new-2"]]
    assert {(r.endpoint_variant, r.assignment, r.propensity) for r in served} == {
        ("Challenger1", "concluded", 1.0)
    }
    # A user who was on the loser converts: the variant that served them is credited
    conversion = usecases.convert(Conversion(endpoint_name=ENDPOINT, user_id=losers[0]))
    assert conversion.endpoint_variant == "Challenger1"
    # 22 invocations and the conversion, all the winner's
    assert counted(log.events[-23:]) == {
        # every call took no time by the test's clock
        "Challenger1": VariantCounts(22, 1, 1.0, reward_sq_sum=1.0, latency_le_1ms=22)
    }


def test_a_concluded_endpoint_s_advice_says_so_not_how_many_users_to_wait_for(
    change, usecases, store, ports
):
    # GIVEN counters that call no winner yet: the advice counts the users still needed
    even = VariantCounts(400, 40, 40.0, users=400, converted_users=40, user_reward_sum=40.0)
    ahead = VariantCounts(400, 52, 52.0, users=400, converted_users=52, user_reward_sum=52.0)
    store.apply_counts("obj-1", {ENDPOINT: {"Champion1": even, "Challenger1": ahead}}, 0.0)
    running = usecases.stats(ENDPOINT).decision
    assert running["winner"] is None and running["users_needed"] > 0
    assert "more users at the current rates and allocation" in running["advice"]

    # WHEN a person concludes anyway, naming the winner
    change(Action.CONCLUDE, winner="Challenger1")

    # THEN nobody is split any more, so no count of users to wait for is given; the
    # figures on the counters stay as they were, in /stats and /admin/show alike
    for decision in (
        usecases.stats(ENDPOINT).decision,
        ShowEndpoint.from_ports(ports)(ENDPOINT).decision,
    ):
        assert decision["users_needed"] is None
        assert decision["advice"].startswith("concluded: Challenger1 serves every user")
        assert (decision["winner"], decision["reason"]) == (None, running["reason"])
        assert [v["probability_best"] for v in decision["variants"]] == [
            v["probability_best"] for v in running["variants"]
        ]


def test_reregistration_keeps_the_lifecycle(change, usecases, ports):
    change(Action.CONCLUDE, winner="Challenger1")

    usecases.registration.register(ENDPOINT)

    assert invoke(usecases, "after").endpoint_variant == "Challenger1"
    assert ShowEndpoint.from_ports(ports)(ENDPOINT).endpoint.lifecycle.winner == "Challenger1"


def test_list_shows_registered_endpoints_with_their_state(change, ports):
    change(Action.PAUSE)

    [endpoint] = ListEndpoints.from_ports(ports)().endpoints

    assert (endpoint.endpoint_name, endpoint.lifecycle.state) == (ENDPOINT, State.PAUSED)


def test_a_retired_variants_users_move_on_their_next_request_and_its_events_count(
    change, usecases, store, log
):
    existing = {user: invoke(usecases, user).target_variant for user in map(str, range(20))}
    moved = [user for user, variant in existing.items() if variant == "Challenger1"]
    assert moved

    view = change(Action.RETIRE_VARIANT, variant="Challenger1", reason="too slow")

    assert view.endpoint.lifecycle.retired == ("Challenger1",)
    assert view.allocation == {"Champion1": 1.0}
    # Worked out and stored at once, not on every read until the next aggregation
    assert store.get_endpoint(ENDPOINT).fresh_figures.allocation == {"Champion1": 1.0}
    assert {invoke(usecases, user).target_variant for user in moved} == {"Champion1"}
    assert {invoke(usecases, f"new-{i}").target_variant for i in range(10)} == {"Champion1"}
    # Late events of the retired variant still count: its counters stay readable
    store.apply_counts("late", {ENDPOINT: {"Challenger1": VariantCounts(2, 1, 1.0)}}, 0.0)
    [challenger] = [
        v.counts for v in store.get_endpoint(ENDPOINT).variants if v.variant_name == "Challenger1"
    ]
    assert (challenger.invocation_count, challenger.conversion_count) == (2, 1)


@pytest.mark.parametrize(
    ("variant", "message"),
    [("Nope", "not a serving variant"), ("Champion1", "the last serving variant")],
)
def test_retiring_an_unknown_or_the_last_variant_is_409(change, variant, message):
    change(Action.RETIRE_VARIANT, variant="Challenger1")

    with pytest.raises(ConflictError, match=message):
        change(Action.RETIRE_VARIANT, variant=variant)


def test_retiring_on_a_concluded_endpoint_is_409(change):
    change(Action.CONCLUDE, winner="Champion1")

    with pytest.raises(ConflictError, match="is concluded: cannot retire a variant"):
        change(Action.RETIRE_VARIANT, variant="Challenger1")


def test_paused_with_the_champion_retired_serves_the_next_variant(change, usecases):
    change(Action.RETIRE_VARIANT, variant="Champion1")
    change(Action.PAUSE)

    assert invoke(usecases, "new").target_variant == "Challenger1"


@pytest.mark.parametrize("state", list(State))
def test_allowed_actions_are_exactly_the_ones_that_succeed(state):
    # The dashboard offers `allowed_actions` and nothing else: each must work, every other 409.
    lifecycle = Lifecycle(state=state, winner="Champion1" if state is State.CONCLUDED else None)
    for action in Action:

        def attempt(action: Action = action) -> Lifecycle:
            if action is Action.RETIRE_VARIANT:
                return lifecycle.retiring(ENDPOINT, "Challenger1")
            if action is Action.ADD_VARIANT:
                return lifecycle.adding(ENDPOINT, "Challenger9", None)
            if action is Action.WEIGHTS:
                return lifecycle.weighted(ENDPOINT, {"Champion1": 2.0})
            if action is Action.REINSTATE:
                return lifecycle.reinstating(ENDPOINT, "Challenger1", {"model_errors": 3})
            return lifecycle.moved(ENDPOINT, action, "Champion1")

        if action in lifecycle.allowed_actions:
            assert attempt().version == lifecycle.version + 1
        else:
            with pytest.raises(ConflictError, match=f"is {state}"):
                attempt()
