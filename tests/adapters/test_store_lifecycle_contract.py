"""The Store contract, continued: lifecycle changes and the audit log, on SQLite and DynamoDB."""

from __future__ import annotations

import sqlite3

import pytest

from abtest.adapters.sqlite import SqliteStore
from abtest.lifecycle import AUDIT_RETENTION, Action, AuditEntry, Lifecycle, Promotion, State
from abtest.records import VariantConfig
from tests.adapters.test_store_contract import (
    ENDPOINT,
    NOW,
    config,
    counters,
    counts,
    metrics,
    run_together,
)

RUNNING = Lifecycle()
PAUSED = RUNNING.moved(ENDPOINT, Action.PAUSE)


def entry(action: str, actor: str = "alice", at: float = NOW) -> AuditEntry:
    return AuditEntry(at, actor, action, "because", {"to": "x"})


def test_a_new_endpoint_is_running_with_an_empty_audit_log(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    assert store.get_endpoint(ENDPOINT).lifecycle == RUNNING
    assert store.audit_log(ENDPOINT) == []


def test_a_change_is_stored_with_its_audit_entry(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)

    assert store.change_lifecycle(ENDPOINT, RUNNING, PAUSED, entry("pause")) is True

    assert store.get_endpoint(ENDPOINT).lifecycle == PAUSED
    assert store.audit_log(ENDPOINT) == [entry("pause")]


def test_every_transition_is_stored_in_order(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    resumed = PAUSED.moved(ENDPOINT, Action.RESUME)
    concluded = resumed.moved(ENDPOINT, Action.CONCLUDE, "B")
    steps = [
        (RUNNING, PAUSED, "pause"),
        (PAUSED, resumed, "resume"),
        (resumed, concluded, "conclude"),
    ]

    for i, (before, after, action) in enumerate(steps):
        assert store.change_lifecycle(ENDPOINT, before, after, entry(action, at=NOW + i))

    stored = store.get_endpoint(ENDPOINT).lifecycle
    assert (stored.state, stored.winner, stored.version) == (State.CONCLUDED, "B", 3)
    assert [e.action for e in store.audit_log(ENDPOINT)] == ["pause", "resume", "conclude"]


def test_a_change_from_a_stale_lifecycle_is_refused_and_changes_nothing(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    assert store.change_lifecycle(ENDPOINT, RUNNING, PAUSED, entry("pause"))

    # The same move again, from what the caller read before the first one
    assert store.change_lifecycle(ENDPOINT, RUNNING, PAUSED, entry("pause", "bob")) is False

    assert store.get_endpoint(ENDPOINT).lifecycle == PAUSED
    assert [e.actor for e in store.audit_log(ENDPOINT)] == ["alice"]


def test_a_change_of_an_unknown_endpoint_is_refused(store):
    assert store.change_lifecycle("nobody", RUNNING, PAUSED, entry("pause")) is False
    assert store.audit_log("nobody") == []
    assert store.endpoint_names() == []


def test_racing_changes_store_exactly_one(store):
    # GIVEN six operators who all read "running" and each make their own move
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    moves = [
        RUNNING.moved(ENDPOINT, Action.PAUSE)
        if i % 2
        else RUNNING.moved(ENDPOINT, Action.CONCLUDE, "A")
        for i in range(6)
    ]

    won = run_together(
        6, lambda i: store.change_lifecycle(ENDPOINT, RUNNING, moves[i], entry(str(i)))
    )

    # THEN one won, its state is the stored one, and the log holds its entry only
    assert won.count(True) == 1
    winner = won.index(True)
    assert store.get_endpoint(ENDPOINT).lifecycle == moves[winner]
    assert [e.action for e in store.audit_log(ENDPOINT)] == [str(winner)]


def test_a_change_racing_aggregation_loses_neither(store):
    # GIVEN aggregators incrementing while an operator pauses and resumes over and over
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)

    def work(i: int) -> None:
        for j in range(6):
            if i == 0:
                current = store.get_endpoint(ENDPOINT).lifecycle
                action = Action.RESUME if current.state is State.PAUSED else Action.PAUSE
                assert store.change_lifecycle(
                    ENDPOINT, current, current.moved(ENDPOINT, action), entry(action)
                )
            else:
                store.apply_counts(
                    f"obj-{i}-{j}", {ENDPOINT: counts(A=(1, 0, 0), B=(2, 1, 1))}, NOW
                )

    run_together(4, work)

    # THEN every increment is there, and so is every change (6: paused then resumed x3)
    assert metrics(store) == {
        "A": counters("A", 1.0, 18, 0, 0.0),
        "B": counters("B", 1.0, 36, 18, 18.0),
    }
    assert store.get_endpoint(ENDPOINT).lifecycle.version == 6
    assert len(store.audit_log(ENDPOINT)) == 6


def test_reregistration_keeps_the_lifecycle(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    concluded = RUNNING.moved(ENDPOINT, Action.CONCLUDE, "B")
    store.change_lifecycle(ENDPOINT, RUNNING, concluded, entry("conclude"))

    store.register_endpoint(config(("A", 1.0), ("B", 2.0)), NOW + 1)

    assert store.get_endpoint(ENDPOINT).lifecycle == concluded
    assert len(store.audit_log(ENDPOINT)) == 1


def test_the_audit_log_keeps_the_newest_entries(store, monkeypatch):
    monkeypatch.setattr("abtest.adapters.sqlite.AUDIT_RETENTION", 3)
    monkeypatch.setattr("abtest.adapters.dynamodb.AUDIT_RETENTION", 3)
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    current = RUNNING
    for i in range(5):
        action = Action.RESUME if current.state is State.PAUSED else Action.PAUSE
        after = current.moved(ENDPOINT, action)
        assert store.change_lifecycle(ENDPOINT, current, after, entry(action, at=NOW + i))
        current = after

    assert [e.at for e in store.audit_log(ENDPOINT)] == [NOW + 2, NOW + 3, NOW + 4]
    assert AUDIT_RETENTION >= 100  # the real retention keeps years of human changes


def test_endpoint_names_lists_endpoints_only(store):
    store.register_endpoint(config(("A", 1.0), name="zeta"), NOW)
    store.register_endpoint(config(("A", 1.0), name="alpha"), NOW)
    store.apply_counts("obj-1", {"alpha": counts(A=(1, 0, 0))}, NOW)  # an object record
    store.change_lifecycle("alpha", RUNNING, RUNNING.moved("alpha", Action.PAUSE), entry("pause"))

    assert store.endpoint_names() == ["alpha", "zeta"]


def test_sqlite_file_written_before_lifecycles_is_migrated_running(tmp_path):
    # GIVEN a file of the schema before lifecycles, with counters
    from abtest.adapters.sqlite import SCHEMA

    path = tmp_path / "before-lifecycles.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)  # endpoints as earlier versions wrote them
        db.execute(
            "INSERT INTO endpoints VALUES"
            " (?, 'ThompsonSampling', '{}', 0, 'active', ?, NULL, NULL)",
            (ENDPOINT, NOW),
        )
        db.execute(
            "INSERT INTO variants (endpoint_name, variant_name, position, initial_variant_weight,"
            " invocation_count, conversion_count, reward_sum) VALUES (?, 'A', 0, 1.0, 40, 4, 3.5)",
            (ENDPOINT,),
        )
        assert "lifecycle" not in {row[1] for row in db.execute("PRAGMA table_info(endpoints)")}

    # WHEN the store opens it
    store = SqliteStore(path)

    # THEN the endpoint is running with its counters, and can be paused
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.lifecycle == RUNNING
    assert endpoint.variants == (counters("A", 1.0, 40, 4, 3.5),)
    assert store.change_lifecycle(ENDPOINT, RUNNING, PAUSED, entry("pause"))
    assert SqliteStore(path).get_endpoint(ENDPOINT).lifecycle == PAUSED
    store.close()


@pytest.mark.parametrize("action", [Action.RESUME, Action.PAUSE])
def test_illegal_moves_are_refused_before_the_store(action):
    # Which moves are legal is the core's (checked before any write): 409 naming the state.
    start = PAUSED if action is Action.PAUSE else RUNNING
    from abtest.errors import ConflictError

    with pytest.raises(ConflictError, match=f"is {start.state}: cannot {action}; allowed: "):
        start.moved(ENDPOINT, action)


def test_retired_variants_are_stored_and_keep_their_counters(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    retired = RUNNING.retiring(ENDPOINT, "B")
    assert store.change_lifecycle(ENDPOINT, RUNNING, retired, entry("retire-variant"))

    # Events naming the retired variant still count, and re-registration keeps it retired
    store.apply_counts("obj-late", {ENDPOINT: counts(B=(3, 1, 1))}, NOW)
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW + 1)

    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.lifecycle.retired == ("B",)
    assert [v.variant_name for v in endpoint.serving_variants] == ["A"]
    assert metrics(store)["B"] == counters("B", 1.0, 3, 1, 1.0)


def test_a_promotion_pending_then_done_is_stored_and_kept_by_reregistration(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    pending = RUNNING.moved(ENDPOINT, Action.CONCLUDE, "B", Promotion.PENDING)
    done = pending.promoted()
    assert store.change_lifecycle(ENDPOINT, RUNNING, pending, entry("conclude")) is True
    assert store.get_endpoint(ENDPOINT).lifecycle == pending

    # A finish that read the lifecycle before the conclusion loses; the right one is stored
    assert store.change_lifecycle(ENDPOINT, RUNNING, done, entry("promote")) is False
    assert store.change_lifecycle(ENDPOINT, pending, done, entry("promote")) is True
    # SageMaker's weights after the promotion, read again at registration
    store.register_endpoint(config(("A", 0.0), ("B", 1.0)), NOW + 1)

    stored = store.get_endpoint(ENDPOINT)
    assert (stored.lifecycle, stored.lifecycle.promotion) == (done, Promotion.DONE)
    assert [v.initial_variant_weight for v in stored.variants] == [0.0, 1.0]
    assert [e.action for e in store.audit_log(ENDPOINT)] == ["conclude", "promote"]
    # Two finishes racing: one is stored
    assert store.change_lifecycle(ENDPOINT, pending, done, entry("promote")) is False


def test_a_lifecycle_stored_before_promotions_existed_still_compares_equal(store):
    # Written without a `promotion` key, as every lifecycle was before: it must still match
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    assert "promotion" not in PAUSED.to_json()
    assert store.change_lifecycle(ENDPOINT, RUNNING, PAUSED, entry("pause")) is True

    resumed = store.get_endpoint(ENDPOINT).lifecycle.moved(ENDPOINT, Action.RESUME)
    assert store.change_lifecycle(ENDPOINT, PAUSED, resumed, entry("resume")) is True


# -- variants over time ------------------------------------------------------------


def test_an_added_variant_joins_at_zero_with_its_lifecycle_and_audit_entry(store):
    # GIVEN a running endpoint whose variants have counted
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(10, 2, 2), B=(8, 1, 1))}, NOW)
    added = RUNNING.adding(ENDPOINT, "C", "models:c")

    # WHEN a challenger is added
    assert store.change_lifecycle(
        ENDPOINT, RUNNING, added, entry("add-variant"), VariantConfig("C", 0.5)
    )

    # THEN it is last, at zero, the others keep their counters, and one entry says so
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.variants == (
        counters("A", 1.0, 10, 2, 2.0),
        counters("B", 1.0, 8, 1, 1.0),
        counters("C", 0.5, 0, 0, 0.0),
    )
    assert endpoint.lifecycle == added
    assert endpoint.lifecycle.added_models == {"C": "models:c"}
    assert store.audit_log(ENDPOINT) == [entry("add-variant")]
    # its events count from now on
    store.apply_counts("obj-2", {ENDPOINT: counts(C=(4, 1, 1))}, NOW)
    assert metrics(store)["C"] == counters("C", 0.5, 4, 1, 1.0)


def test_an_add_from_a_stale_lifecycle_adds_nothing(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    assert store.change_lifecycle(ENDPOINT, RUNNING, PAUSED, entry("pause"))

    stale = RUNNING.adding(ENDPOINT, "C", None)
    assert not store.change_lifecycle(ENDPOINT, RUNNING, stale, entry("x"), VariantConfig("C"))

    assert store.get_endpoint(ENDPOINT).variant_names == ("A", "B")
    assert [e.action for e in store.audit_log(ENDPOINT)] == ["pause"]


def test_racing_adds_store_exactly_one_variant(store):
    # GIVEN four operators who all read "running" and each add their own challenger
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    names = [f"C{i}" for i in range(4)]

    won = run_together(
        4,
        lambda i: store.change_lifecycle(
            ENDPOINT,
            RUNNING,
            RUNNING.adding(ENDPOINT, names[i], None),
            entry(names[i]),
            VariantConfig(names[i]),
        ),
    )

    # THEN one won: its variant is the only one added, and its entry the only one logged
    assert won.count(True) == 1
    winner = names[won.index(True)]
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.variant_names == ("A", "B", winner)
    assert endpoint.lifecycle.added_models == {winner: None}
    assert [e.action for e in store.audit_log(ENDPOINT)] == [winner]


def test_an_add_racing_aggregation_loses_neither(store):
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    added = RUNNING.adding(ENDPOINT, "C", None)

    def work(i: int) -> None:
        if i == 0:
            assert store.change_lifecycle(
                ENDPOINT, RUNNING, added, entry("add"), VariantConfig("C")
            )
            return
        for j in range(6):
            store.apply_counts(f"obj-{i}-{j}", {ENDPOINT: counts(A=(1, 0, 0), B=(2, 1, 1))}, NOW)

    run_together(3, work)

    assert metrics(store) == {
        "A": counters("A", 1.0, 12, 0, 0.0),
        "B": counters("B", 1.0, 24, 12, 12.0),
        "C": counters("C", 1.0, 0, 0, 0.0),
    }
    assert store.get_endpoint(ENDPOINT).lifecycle == added


def test_reregistration_keeps_added_variants_and_weights_and_retires_dropped_ones(store):
    # GIVEN an endpoint with a challenger added, weights set by hand, then counts
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)
    added = RUNNING.adding(ENDPOINT, "C", "models:c")
    assert store.change_lifecycle(ENDPOINT, RUNNING, added, entry("add"), VariantConfig("C"))
    weighted = added.weighted(ENDPOINT, {"A": 3.0})
    assert store.change_lifecycle(ENDPOINT, added, weighted, entry("weights"))
    store.apply_counts("obj-1", {ENDPOINT: counts(A=(5, 1, 1), B=(4, 1, 1), C=(3, 1, 1))}, NOW)

    # WHEN a restart registers the config again, unchanged: nothing changes
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW + 1)
    assert store.get_endpoint(ENDPOINT).lifecycle == weighted
    assert len(store.audit_log(ENDPOINT)) == 2

    # WHEN the config then drops B
    store.register_endpoint(config(("A", 1.0)), NOW + 2)

    # THEN B is retired with its counters, C still serves, the weights stay
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.lifecycle.retired == ("B",)
    assert endpoint.lifecycle.added_models == {"C": "models:c"}
    assert endpoint.weights == {"A": 3.0, "B": 1.0, "C": 1.0}
    assert [v.variant_name for v in endpoint.serving_variants] == ["A", "C"]
    assert metrics(store) == {
        "A": counters("A", 1.0, 5, 1, 1.0),
        "B": counters("B", 1.0, 4, 1, 1.0),
        "C": counters("C", 1.0, 3, 1, 1.0),
    }
    assert [e.actor for e in store.audit_log(ENDPOINT)] == ["alice", "alice", "registration"]


def test_registration_racing_a_change_keeps_both(store):
    # A person pauses while registrations drop B: the pause and B's retirement both hold.
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)

    def work(i: int) -> None:
        if i == 0:
            for _ in range(10):
                current = store.get_endpoint(ENDPOINT).lifecycle
                if current.state is State.RUNNING and store.change_lifecycle(
                    ENDPOINT, current, current.moved(ENDPOINT, Action.PAUSE), entry("pause")
                ):
                    return
        else:
            store.register_endpoint(config(("A", 1.0)), NOW + i)

    run_together(3, work)

    lifecycle = store.get_endpoint(ENDPOINT).lifecycle
    assert (lifecycle.state, lifecycle.retired) == (State.PAUSED, ("B",))
    assert sorted(e.action for e in store.audit_log(ENDPOINT)) == ["pause", "retire-variant"]


def test_a_variant_new_to_a_registered_endpoint_is_added_and_warms_up_alone(store):
    # On SageMaker a challenger is deployed as a new production variant, and the endpoint's
    # state change re-registers it: it joins as one added through the admin API would.
    store.register_endpoint(config(("A", 1.0), ("B", 1.0)), NOW)

    endpoint = store.register_endpoint(config(("A", 1.0), ("B", 1.0), ("C", 1.0)), NOW + 1)

    assert endpoint.lifecycle.added_models == {"C": None}
    assert endpoint.lifecycle.version == 1
    (entry,) = store.audit_log(ENDPOINT)
    assert (entry.actor, entry.action, entry.details["variants"]) == (
        "registration",
        "add-variant",
        ["C"],
    )
    # registered again unchanged (a restart), nothing more happens
    store.register_endpoint(config(("A", 1.0), ("B", 1.0), ("C", 1.0)), NOW + 2)
    assert store.get_endpoint(ENDPOINT).lifecycle == endpoint.lifecycle
    assert len(store.audit_log(ENDPOINT)) == 1
