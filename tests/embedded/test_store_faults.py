"""A full, read-only or unreadable SQLite store, over real HTTP: 503 where nothing safe can
be done, the fallback for invocations, and never a 500.

The faults are SQLite's own: `max_page_count` makes the file full, `query_only` makes
it read-only, on every connection the store opens; a file that is no database makes
every connection fail.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from abtest.adapters.sqlite import SqliteStore
from abtest.clock import ManualClock
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import STORE_NAME, Runtime
from tests.embedded.helpers import ENDPOINT, logged_events, write_config

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


@contextmanager
def unreadable_store(runtime: Runtime) -> Iterator[None]:
    """The store's file replaced by one that is no database (SQLite's NOTADB on the next
    connection; this process's connections closed first), then put back."""
    runtime.store.close()
    path = runtime.data_dir / STORE_NAME
    aside = path.with_name("aside")
    aside.mkdir()
    kept = [p for p in path.parent.glob(f"{STORE_NAME}*") if p.is_file()]
    for p in kept:
        p.rename(aside / p.name)
    path.write_bytes(b"not a database, whatever its name says" * 100)
    try:
        yield
    finally:
        runtime.store.close()
        path.unlink()
        for p in kept:
            (aside / p.name).rename(p)


def test_after_a_conclusion_an_unreadable_store_still_serves_only_the_winner(
    tmp_path: Path, http: httpx.Client
) -> None:
    # GIVEN three variants, the experiment concluded for one of them by a person
    clock = ManualClock()
    config = write_config(
        tmp_path,
        interval=3600,
        variants={name: "tests.embedded.helpers:constant" for name in "ABC"},
    )
    runtime = Runtime(config, tmp_path / "data", clock=clock, rng=random.Random(3))
    with EmbeddedServer(runtime) as server:
        assert invoke(http, server.url, "before").json()["assignment"] == "new"
        concluded = http.post(
            f"{server.url}/admin/conclude", json={"endpoint_name": ENDPOINT, "winner": "C"}
        )
        assert concluded.status_code == 200, concluded.text

        # WHEN its store becomes unreadable for longer than a record is cached, and users
        # arrive
        with unreadable_store(runtime):
            clock.advance(60)
            answers = [invoke(http, server.url, f"user-{n}") for n in range(30)]
            health = http.get(f"{server.url}/health").json()

    # THEN the winner serves every one (the config's even weights would not), logged with
    # its propensity, 1, and each is counted as a fallback
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert {
        (a.json()["assignment"], a.json()["target_variant"], a.json()["propensity"])
        for a in answers
    } == {("fallback", "C", 1.0)}
    assert health["counts"]["Fallbacks"] == 30
    fallbacks = [e for e in logged_events(runtime.data_dir) if e["assignment"] == "fallback"]
    assert {(e["variant_name"], e["propensity"]) for e in fallbacks} == {("C", 1.0)}
    assert len(fallbacks) == 30
