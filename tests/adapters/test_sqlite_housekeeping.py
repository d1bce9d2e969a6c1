"""SQLite has no TTL of its own: expired rows are purged (the embedded runtime does it at start)."""

from __future__ import annotations

import sqlite3

from abtest.adapters.sqlite import SqliteStore
from abtest.events import CONVERSION
from abtest.records import Assignment, EndpointConfig, EventKey, VariantConfig


def test_purge_removes_only_what_has_expired(tmp_path):
    store = SqliteStore(tmp_path / "abtest.sqlite3")
    store.register_endpoint(EndpointConfig("ep", "UCB1", {}, 0, (VariantConfig("A"),)), 0)
    for user, ttl in (("old", 100), ("fresh", 1_000)):
        store.create_assignment(Assignment("ep", user, "A", "UCB1", 1.0, 0.0, ttl), 0)
        store.mark_conversion_logged("ep", user, f"inference-{user}", ttl, 0)
    store.apply_counts("sealed/1.jsonl", {}, 0)

    assert store.purge_expired(now=500) == 2

    assert store.get_assignment("ep", "old", 0) is None
    assert store.get_assignment("ep", "fresh", 0) is not None
    # The old marker is gone, so the same inference id counts again; the fresh one does not.
    assert store.conversion_logged("ep", "old", "inference-old", 0) is False
    assert store.conversion_logged("ep", "fresh", "inference-fresh", 0) is True
    # Applied objects stay: sealed files are re-aggregated at every start.
    assert store.apply_counts("sealed/1.jsonl", {}, 500) is False
    store.close()


def test_a_file_from_before_conversion_claims_keeps_its_markers_and_takes_claims(tmp_path):
    path = tmp_path / "abtest.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE conversions (endpoint_name TEXT NOT NULL, user_id TEXT NOT NULL,"
        " inference_id TEXT NOT NULL, ttl INTEGER NOT NULL,"
        " PRIMARY KEY (endpoint_name, user_id, inference_id)) WITHOUT ROWID;"
        " INSERT INTO conversions VALUES ('ep', 'u1', 'inf-1', 1000);"
    )
    old.close()

    store = SqliteStore(path)

    assert store.conversion_logged("ep", "u1", "inf-1", 0) is True
    key = EventKey("ep", "u1", "inf-1", CONVERSION)
    assert store.claim_events("sealed/1.jsonl", [key], 1000, 0) == {key}
    assert store.claim_events("sealed/2.jsonl", [key], 1000, 0) == set()
    store.close()
