"""A full or read-only SQLite store, over real HTTP: 503 where nothing safe can be done,
the fallback for invocations, and never a 500.

The faults are SQLite's own: `max_page_count` makes the file full, `query_only` makes
it read-only, on every connection the store opens.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from abtest.adapters.sqlite import SqliteStore
from tests.embedded.helpers import ENDPOINT, logged_events

MODELS = {"A": "tests.embedded.helpers:constant", "B": "tests.embedded.helpers:constant"}


def faulty_connections(monkeypatch: pytest.MonkeyPatch, pragma: str) -> None:
    original: Callable = SqliteStore._connection

    def connection(self: SqliteStore):
        db = original(self)
        db.execute(pragma)
        return db

    monkeypatch.setattr(SqliteStore, "_connection", connection)


def invoke(http: httpx.Client, url: str, user: str) -> httpx.Response:
    return http.post(
        f"{url}/invocation", json={"endpoint_name": ENDPOINT, "user_id": user, "data": "x"}
    )


def test_a_read_only_store_falls_back_for_new_users_and_still_takes_conversions(
    start_server, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a served endpoint with one user assigned, whose store then turns read-only
    server = start_server(variants=MODELS)
    assert invoke(http, server.url, "known").json()["assignment"] == "new"
    faulty_connections(monkeypatch, "PRAGMA query_only = ON")

    # WHEN a new user is invoked, the known one again, and the known one converts
    new = invoke(http, server.url, "newcomer")
    known = invoke(http, server.url, "known")
    conversion = http.post(
        f"{server.url}/conversion",
        json={"endpoint_name": ENDPOINT, "user_id": "known", "inference_id": "i-1"},
    )

    # THEN the new user is served by the fallback, the known one keeps the variant,
    # and the conversion is taken: its event is in the log, which is what counts (the
    # marker that makes a repeat a duplicate could not be written, so a repeat would be
    # logged again, and aggregation would still count it once)
    assert new.status_code == 200, new.text
    assert new.json()["assignment"] == "fallback"
    assert known.json()["assignment"] == "existing"
    assert conversion.status_code == 200, conversion.text
    assert conversion.json()["duplicate"] is False
    logged = [e for e in logged_events(server.runtime.data_dir) if e["type"] == "conversion"]
    assert [e["inference_id"] for e in logged] == ["i-1"]


def test_a_full_store_falls_back_for_new_users_and_never_500s(
    start_server, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a served endpoint whose store file may not grow any more
    server = start_server(variants=MODELS)
    assert invoke(http, server.url, "warm").status_code == 200
    faulty_connections(monkeypatch, "PRAGMA max_page_count = 1")  # clamps to the current size

    # WHEN new users keep arriving until the file is full (the last page fills first)
    answers = [invoke(http, server.url, f"user-{n}") for n in range(300)]

    # THEN every one is answered, and once it is full new users get the fallback
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.is_error]
    kinds = [a.json()["assignment"] for a in answers]
    assert "fallback" in kinds
    assert set(kinds[kinds.index("fallback") :]) == {"fallback"}
