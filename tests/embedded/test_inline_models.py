"""Variants declared `inline`: called without a thread hand-off, answering exactly as before."""

from __future__ import annotations

import threading

import pytest

from abtest.adapters import nonblocking
from abtest.adapters.local_models import LocalModels
from abtest.adapters.sqlite import SqliteStore
from abtest.embedded.config import load_config
from abtest.errors import ConfigError, ModelError
from abtest.records import Assignment
from tests.embedded.helpers import ENDPOINT, logged_events, thread_name, write_config

WHERE = {"A": "tests.embedded.helpers:thread_name", "B": "tests.embedded.helpers:thread_name"}


def invoke(http, url: str, user: str) -> dict:
    body = {"endpoint_name": ENDPOINT, "user_id": user, "data": "{}"}
    response = http.post(f"{url}/invocation", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_returning_user_is_answered_on_the_event_loop_and_a_new_one_on_a_thread(
    start_server, http
) -> None:
    # GIVEN a server whose variants are all declared inline
    server = start_server(variants=WHERE, inline=True)

    # WHEN a user is invoked for the first time, then again
    first = invoke(http, server.url, "u1")
    again = invoke(http, server.url, "u1")

    # THEN the first call (a store write: the new assignment) ran on a request thread, the
    # second on the server's own thread, the event loop; the answers say what they always said
    assert first["predictions"]["thread"].startswith("abtest-request")
    assert again["predictions"]["thread"] == "abtest-server"
    assert first["assignment"] == "new" and again["assignment"] == "existing"
    assert again["endpoint_variant"] == first["endpoint_variant"]
    assert again["propensity"] == first["propensity"]
    # and the new user, tried on the loop before the thread, is logged once, as new
    server.stop()
    events = [e for e in logged_events(server.runtime.data_dir) if e["type"] == "invocation"]
    assert [e["assignment"] for e in events] == ["new", "existing"]


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


def test_on_the_loop_a_store_write_would_block_and_a_read_does_not(tmp_path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    assignment = Assignment(ENDPOINT, "u1", "A", "ThompsonSampling", 0.5, 1.0, 100)
    try:
        with nonblocking.on_the_loop():
            assert store.get_assignment(ENDPOINT, "u1", 1.0) is None
            with pytest.raises(nonblocking.WouldBlock):
                store.create_assignment(assignment, 1.0)
        # Nothing was written on the loop; off it, the write goes through.
        assert store.get_assignment(ENDPOINT, "u1", 1.0) is None
        assert store.create_assignment(assignment, 1.0) == assignment
    finally:
        store.close()
