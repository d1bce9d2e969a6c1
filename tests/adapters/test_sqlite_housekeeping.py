"""SQLite has no TTL of its own: expired rows are purged (the embedded runtime does it at start)."""

from __future__ import annotations

from abtest.adapters.sqlite import SqliteStore
from abtest.records import Assignment, EndpointConfig, VariantConfig


def test_purge_removes_only_what_has_expired(tmp_path):
    store = SqliteStore(tmp_path / "abtest.sqlite3")
    store.register_endpoint(EndpointConfig("ep", "UCB1", 0.1, 0, (VariantConfig("A"),)), 0)
    for user, ttl in (("old", 100), ("fresh", 1_000)):
        store.create_assignment(Assignment("ep", user, "A", "UCB1", 1.0, 0.0, ttl), 0)
        store.record_conversion("ep", user, f"inference-{user}", ttl, 0)
    store.apply_counts("sealed/1.jsonl", {}, 0)

    assert store.purge_expired(now=500) == 2

    assert store.get_assignment("ep", "old", 0) is None
    assert store.get_assignment("ep", "fresh", 0) is not None
    # The old marker is gone, so the same inference id counts again; the fresh one does not.
    assert store.record_conversion("ep", "old", "inference-old", 2_000, 500) is True
    assert store.record_conversion("ep", "fresh", "inference-fresh", 2_000, 500) is False
    # Applied objects stay: sealed files are re-aggregated at every start.
    assert store.apply_counts("sealed/1.jsonl", {}, 500) is False
    store.close()
