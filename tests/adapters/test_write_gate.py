"""The SQLite store's write gate: this process's writers one at a time, woken in turn."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from abtest.adapters import nonblocking
from abtest.adapters.nonblocking import WriteGate
from abtest.adapters.sqlite import SqliteStore
from abtest.errors import StoreUnavailableError
from abtest.records import Assignment
from tests.adapters.conftest import hold_transaction

ASSIGNMENT = Assignment("e", "u1", "A", "ThompsonSampling", 0.5, 1.0, 100)


def test_a_waiter_is_woken_when_the_holder_gives_the_gate_back_not_before() -> None:
    gate = WriteGate()
    woken: list[str] = []
    assert gate.try_take()
    assert not gate.try_take()  # one holder at a time

    gate.when_free(lambda: woken.append("first"))
    gate.when_free(lambda: woken.append("second"))
    assert woken == []
    gate.give_back()

    assert woken == ["first", "second"]
    gate.when_free(lambda: woken.append("free already"))  # nothing to wait for: at once
    assert woken[-1] == "free already"
    assert gate.take(timeout=0) and not gate.take(timeout=0)
    gate.give_back()


def test_a_thread_waiting_for_the_gate_takes_it_at_its_release() -> None:
    gate = WriteGate()
    assert gate.try_take()
    taken = threading.Event()

    def wait() -> None:
        if gate.take(timeout=30):
            taken.set()
            gate.give_back()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not taken.is_set()
    gate.give_back()
    waiter.join(30)
    assert taken.is_set()


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite3", busy_timeout=0.2)
    yield store
    store.close()


def test_on_the_loop_a_write_beside_another_threads_says_when_to_try_again(store) -> None:
    holder, release = hold_transaction(store)
    try:
        with nonblocking.on_the_loop(), pytest.raises(nonblocking.WouldBlock) as blocked:
            store.create_assignment(ASSIGNMENT, 1.0)
        assert blocked.value.when_free is not None
        free = threading.Event()
        blocked.value.when_free(free.set)
        assert not free.is_set()
    finally:
        release.set()
        holder.join(30)
    assert free.is_set()
    assert store.get_assignment("e", "u1", 1.0) is None  # nothing was written
    with nonblocking.on_the_loop():
        assert store.create_assignment(ASSIGNMENT, 1.0) == ASSIGNMENT


def test_on_the_loop_another_process_lock_can_only_be_waited_for_on_a_thread(store) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with nonblocking.on_the_loop(), pytest.raises(nonblocking.WouldBlock) as blocked:
            store.create_assignment(ASSIGNMENT, 1.0)
        assert blocked.value.when_free is None  # nothing in this process will say
        other.execute("COMMIT")
        # The gate was given back: the next write goes through.
        assert store.create_assignment(ASSIGNMENT, 1.0) == ASSIGNMENT
    finally:
        other.close()


def test_a_gate_held_past_the_busy_timeout_is_the_store_unavailable(store) -> None:
    holder, release = hold_transaction(store)
    try:
        with pytest.raises(StoreUnavailableError, match=r"held over 0\.2 s"):
            store.create_assignment(ASSIGNMENT, 1.0)
    finally:
        release.set()
        holder.join(30)
    assert store.create_assignment(ASSIGNMENT, 1.0) == ASSIGNMENT
