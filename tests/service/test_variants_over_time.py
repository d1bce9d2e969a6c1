"""Variants over time as the use cases run them: a challenger added to a running experiment
warms up alone, weights set by hand, and what each refuses."""

from __future__ import annotations

import pytest

from abtest.errors import BadRequestError, ConflictError
from abtest.lifecycle import Action, State
from abtest.records import VariantCounts
from abtest.usecases.admin import AddVariant, ChangeLifecycle, LifecycleChange
from abtest.usecases.endpoints import figures_of
from abtest.usecases.invoke import Invocation
from tests.service.doubles import ENDPOINT, Catalog, config

WARMUP = 5


def trials(n: int, converted: int) -> VariantCounts:
    """n users (and invocations), `converted` of them converted once, reward 1 each."""
    return VariantCounts(
        invocation_count=n,
        conversion_count=converted,
        reward_sum=converted,
        reward_sq_sum=converted,
        users=n,
        converted_users=converted,
        user_reward_sum=converted,
        user_reward_sq_sum=converted,
        weight_sum=2.0 * n,
        weight_sq_sum=4.0 * n,
    )


@pytest.fixture
def registered(ports, usecases):
    """The endpoint registered with `strategy`, its two variants past warm-up."""

    def register(strategy: str = "ThompsonSampling") -> None:
        ports.catalog = Catalog(config(strategy, warmup=WARMUP))
        usecases.registration.catalog = ports.catalog
        usecases.registration.register(ENDPOINT)
        counts = {"Champion1": trials(200, 40), "Challenger1": trials(200, 50)}
        ports.store.apply_counts("obj-past", {ENDPOINT: counts}, 0.0)

    return register


def allocating(ports) -> str:
    """The strategy that allocates new users now (WeightedSampling in warm-up)."""
    return figures_of(ports.store.get_endpoint(ENDPOINT)).strategy


def add(ports, variant: str = "Challenger2", **fields):
    return AddVariant.from_ports(ports)(
        LifecycleChange(ENDPOINT, Action.ADD_VARIANT, variant=variant, model="m:f", **fields)
    )


def change(ports, action: Action, **fields):
    return ChangeLifecycle.from_ports(ports)(LifecycleChange(ENDPOINT, action, **fields))


def test_an_added_challenger_warms_up_alone_and_then_joins(ports, usecases, registered):
    # GIVEN a running Thompson experiment past its warm-up
    registered()
    before = usecases.stats(ENDPOINT)
    assert allocating(ports) == "ThompsonSampling"

    # WHEN a third variant is added
    view = add(ports, reason="new model")

    # THEN it gets warm-up's share (equal weights: 1/3) and the others split the rest as the
    # strategy did without it; nobody's counters change
    after = usecases.stats(ENDPOINT).allocation
    assert allocating(ports) == "ThompsonSampling"  # the experiment is not back in warm-up
    assert after["Challenger2"] == pytest.approx(1 / 3)
    for name in ("Champion1", "Challenger1"):
        assert after[name] == pytest.approx(before.allocation[name] * 2 / 3)
    counted = {v.variant_name: v.counts for v in view.endpoint.variants}
    assert counted == {
        "Champion1": trials(200, 40),
        "Challenger1": trials(200, 50),
        "Challenger2": VariantCounts(),
    }
    assert view.endpoint.lifecycle.added_models == {"Challenger2": "m:f"}
    assert ports.catalog.prepared == [("Challenger2", "m:f")]
    (entry,) = view.audit_log
    assert (entry.action, entry.reason, entry.details["variant"]) == (
        "add-variant",
        "new model",
        "Challenger2",
    )

    # WHEN it has more than `warmup` trials of its own
    ports.store.apply_counts("obj-new", {ENDPOINT: {"Challenger2": trials(WARMUP + 1, 1)}}, 1.0)

    # THEN the strategy allocates among all three: no fixed share any more
    joined = usecases.stats(ENDPOINT)
    assert allocating(ports) == "ThompsonSampling"
    assert set(joined.allocation) == {"Champion1", "Challenger1", "Challenger2"}
    assert joined.allocation["Challenger2"] != pytest.approx(1 / 3)


def test_new_users_reach_the_added_challenger(ports, usecases, registered):
    registered()
    add(ports)

    served = {
        usecases.invoke(
            Invocation(endpoint_name=ENDPOINT, user_id=f"u{n}", data="x")
        ).target_variant
        for n in range(60)
    }

    # P(no new user of 60 gets a 1/3 share) = (2/3)^60 < 1e-10
    assert "Challenger2" in served


def test_adding_an_existing_variant_is_409_naming_it(ports, registered):
    registered()
    change(ports, Action.RETIRE_VARIANT, variant="Challenger1")

    for name, state in (("Champion1", "serving"), ("Challenger1", "retired")):
        with pytest.raises(ConflictError, match=f"already a variant .*{state}") as error:
            add(ports, name)
        assert error.value.details[0]["field"] == "variant"


def test_adding_to_a_concluded_experiment_is_409_naming_the_state(ports, registered):
    registered()
    change(ports, Action.CONCLUDE, winner="Challenger1")

    with pytest.raises(ConflictError, match="is concluded: cannot add-variant") as error:
        add(ports)
    assert error.value.details[0]["field"] == "state"
    assert ports.catalog.prepared == []  # refused before anything was loaded


def test_a_paused_experiment_takes_a_challenger_and_keeps_serving_the_champion(
    ports, usecases, registered
):
    registered()
    change(ports, Action.PAUSE)

    view = add(ports)

    assert view.endpoint.lifecycle.state is State.PAUSED
    assert view.allocation == {"Champion1": 1.0, "Challenger1": 0.0, "Challenger2": 0.0}


def test_a_variant_the_catalog_cannot_call_is_refused_and_nothing_is_stored(ports, registered):
    registered()

    with pytest.raises(ConflictError, match="not deployed"):
        AddVariant.from_ports(ports)(
            LifecycleChange(ENDPOINT, Action.ADD_VARIANT, variant="Challenger2")
        )

    endpoint = ports.store.get_endpoint(ENDPOINT)
    assert endpoint.variant_names == ("Champion1", "Challenger1")
    assert ports.store.audit_log(ENDPOINT) == []


def test_weights_move_the_allocation_at_once_and_while_paused(ports, usecases, registered):
    registered("WeightedSampling")
    assert usecases.stats(ENDPOINT).allocation == pytest.approx(
        {"Champion1": 0.5, "Challenger1": 0.5}
    )

    view = change(ports, Action.WEIGHTS, weights={"Champion1": 3.0}, reason="ramp")

    assert view.allocation == pytest.approx({"Champion1": 0.75, "Challenger1": 0.25})
    assert usecases.stats(ENDPOINT).allocation == pytest.approx(
        {"Champion1": 0.75, "Challenger1": 0.25}
    )
    assert view.audit_log[-1].details["weights"] == {"Champion1": 3.0}
    # Paused, a WeightedSampling endpoint keeps its fixed weights: the ones set by hand
    paused = change(ports, Action.PAUSE)
    assert paused.allocation == pytest.approx({"Champion1": 0.75, "Challenger1": 0.25})
    # Registration (a restart) keeps them
    usecases.registration.register(ENDPOINT)
    assert ports.store.get_endpoint(ENDPOINT).weights == {"Champion1": 3.0, "Challenger1": 1.0}


def test_weights_are_refused_naming_the_field(ports, registered):
    registered("WeightedSampling")
    change(ports, Action.RETIRE_VARIANT, variant="Challenger1")

    with pytest.raises(BadRequestError, match=r"^weights: 'Nope': not a serving variant"):
        change(ports, Action.WEIGHTS, weights={"Nope": 1.0})
    with pytest.raises(BadRequestError, match=r"^weights: 'Challenger1': not a serving"):
        change(ports, Action.WEIGHTS, weights={"Challenger1": 1.0})
    with pytest.raises(BadRequestError, match=r"^weights: the serving variants' weights are all 0"):
        change(ports, Action.WEIGHTS, weights={"Champion1": 0.0})


def test_weights_of_a_strategy_that_does_not_use_them_are_409_naming_strategy(ports, registered):
    registered("ThompsonSampling")

    with pytest.raises(ConflictError, match=r"^strategy: ") as error:
        change(ports, Action.WEIGHTS, weights={"Champion1": 2.0})
    assert error.value.details[0]["field"] == "strategy"
    assert ports.store.audit_log(ENDPOINT) == []


def test_an_add_that_lost_a_race_is_409_and_adds_nothing(ports, registered):
    # GIVEN a pause stored between this add's read and its write
    registered()
    real = ports.store.store.change_lifecycle

    def pause_first(*args):
        ports.store.store.change_lifecycle = real  # once: the pause goes straight through
        change(ports, Action.PAUSE)
        return real(*args)

    ports.store.store.change_lifecycle = pause_first
    with pytest.raises(ConflictError, match="changed by someone else meanwhile"):
        add(ports)

    # THEN the pause stands alone: no variant added, one audit entry
    endpoint = ports.store.get_endpoint(ENDPOINT)
    assert (endpoint.lifecycle.state, endpoint.variant_names) == (
        State.PAUSED,
        ("Champion1", "Challenger1"),
    )
    assert [e.action for e in ports.store.audit_log(ENDPOINT)] == ["pause"]
