"""Variants declared `inline`: called without a thread hand-off, answering exactly as before."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time

import pytest

from abtest.adapters import nonblocking
from abtest.adapters.local_models import LocalModels
from abtest.adapters.sqlite import SqliteStore
from abtest.embedded import server
from abtest.embedded.config import load_config
from abtest.errors import ConfigError, ModelError
from abtest.records import Assignment
from tests.adapters.conftest import hold_transaction
from tests.embedded.helpers import ENDPOINT, logged_events, thread_name, write_config

WHERE = {"A": "tests.embedded.helpers:thread_name", "B": "tests.embedded.helpers:thread_name"}


def invoke(http, url: str, user: str) -> dict:
    body = {"endpoint_name": ENDPOINT, "user_id": user, "data": "{}"}
    response = http.post(f"{url}/invocation", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_with_every_variant_inline_invocations_are_answered_on_the_event_loop(
    start_server, http
) -> None:
    # GIVEN a server whose variants are all declared inline
    server = start_server(variants=WHERE, inline=True)

    # WHEN a user is invoked for the first time (a store write), then again
    first = invoke(http, server.url, "u1")
    again = invoke(http, server.url, "u1")

    # THEN both ran on the server's own thread, the event loop, and answer as ever
    assert first["predictions"]["thread"] == again["predictions"]["thread"] == "abtest-server"
    assert first["assignment"] == "new" and again["assignment"] == "existing"
    assert again["endpoint_variant"] == first["endpoint_variant"]
    assert again["propensity"] == first["propensity"]


def test_a_new_user_whose_write_would_wait_moves_to_a_thread_and_is_logged_once(
    start_server, http
) -> None:
    # GIVEN an inline server, and another connection holding the store's write lock
    server = start_server(variants=WHERE, inline=True)
    invoke(http, server.url, "warm")  # the endpoint record is cached: no read waits
    holder = sqlite3.connect(
        server.runtime.store.path, isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, holder.execute, ["COMMIT"]).start()

    # WHEN a new user is invoked, and /health asked for, while the lock is held
    began = time.monotonic()
    health = http.get(f"{server.url}/health")
    health_seconds = time.monotonic() - began
    first = invoke(http, server.url, "u1")
    holder.close()

    # THEN /health did not wait for the lock; the invocation waited on a request thread,
    # and is logged once, as new
    assert health.status_code == 200 and health_seconds < 0.4, health_seconds
    assert first["predictions"]["thread"].startswith("abtest-request")
    assert first["assignment"] == "new"
    server.stop()
    events = [e for e in logged_events(server.runtime.data_dir) if e["user_id"] == "u1"]
    assert [e["assignment"] for e in events] == ["new"]


def test_without_inline_every_model_call_keeps_its_thread_and_timeout(start_server, http) -> None:
    server = start_server(variants=WHERE)

    invoke(http, server.url, "u1")
    answer = invoke(http, server.url, "u1")

    assert answer["predictions"]["thread"].startswith("abtest-model")


def test_an_inline_callable_runs_on_the_callers_thread_and_fails_as_a_model_error() -> None:
    models = LocalModels(
        {"A": thread_name, "Broken": "tests.embedded.helpers:broken"}, inline=["A", "Broken"]
    )
    try:
        result = models.invoke("e", "A", "{}", "application/json", "i")
        assert result.predictions == {"thread": threading.current_thread().name}
        assert models.all_inline
        with pytest.raises(ModelError, match=r"'Broken' failed: RuntimeError: weights file"):
            models.invoke("e", "Broken", "{}", "application/json", "i")
    finally:
        models.close()


def test_only_a_callable_variant_can_be_inline(tmp_path) -> None:
    with pytest.raises(ValueError, match="'B' is not a callable variant"):
        LocalModels({"A": thread_name, "B": "http://127.0.0.1:9/x"}, inline=["B"])
    path = write_config(tmp_path, variants={"A": "http://127.0.0.1:9/x"}, inline=True)
    with pytest.raises(ConfigError, match=r"variants\[0\]\.inline: only a Python callable"):
        load_config(path)


def test_on_the_loop_a_store_write_never_waits_for_the_lock(tmp_path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", busy_timeout=5.0)
    assignment = Assignment(ENDPOINT, "u1", "A", "ThompsonSampling", 0.5, 1.0, 100)
    holder = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        with nonblocking.on_the_loop(), pytest.raises(nonblocking.WouldBlock):
            store.create_assignment(assignment, 1.0)
        assert time.monotonic() - began < 1.0  # not the 5 s busy timeout
        holder.execute("COMMIT")
        assert store.get_assignment(ENDPOINT, "u1", 1.0) is None  # nothing was written
        with nonblocking.on_the_loop():
            assert store.create_assignment(assignment, 1.0) == assignment
        # Off the loop the same connection waits for the lock again, as a store must.
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, holder.execute, ["COMMIT"]).start()
        assert store.create_assignment(assignment, 2.0) == assignment
    finally:
        holder.close()
        store.close()


def test_a_new_user_whose_write_finds_another_thread_writing_waits_on_the_loop(
    start_server, http
) -> None:
    # GIVEN an inline server, and one of its own threads (as aggregation does) in a store
    # write transaction
    server = start_server(variants=WHERE, inline=True)
    invoke(http, server.url, "warm")
    store = server.runtime.store
    holder, release = hold_transaction(store)

    # WHEN a new user is invoked while the transaction is open
    answers: list[dict] = []
    request = threading.Thread(target=lambda: answers.append(invoke(http, server.url, "u1")))
    request.start()
    deadline = time.monotonic() + 30
    while not store._gate._waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    waited = bool(store._gate._waiting)
    health = http.get(f"{server.url}/health")  # the loop is not held meanwhile
    release.set()
    holder.join(30)
    request.join(30)

    # THEN it waited for the gate without a thread, and was answered on the loop once the
    # transaction ended, new and logged once
    assert waited and health.status_code == 200
    assert answers[0]["predictions"]["thread"] == "abtest-server"
    assert answers[0]["assignment"] == "new"
    server.stop()
    events = [e for e in logged_events(server.runtime.data_dir) if e["user_id"] == "u1"]
    assert [e["assignment"] for e in events] == ["new"]


def test_a_gate_given_back_after_the_servers_loop_closed_does_not_fail_the_writer() -> None:
    # A request that stopped waiting (its connection lost, the server stopping) leaves its
    # wake-up registered; the thread giving the gate back later must not fail on it.
    loop = asyncio.new_event_loop()
    waiting = loop.create_future()
    loop.close()
    gate = nonblocking.WriteGate()
    assert gate.try_take()
    gate.when_free(functools.partial(server._wake, loop, waiting))
    gate.give_back()
    assert gate.try_take()
