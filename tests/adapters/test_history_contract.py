"""The History contract, on both stores: snapshots kept in order, once per object, thinned
as `abtest.history` says, and out of the way of the endpoint records beside them."""

from __future__ import annotations

import sqlite3

import pytest

from abtest import history as history_module
from abtest.adapters.dynamodb_history import DynamoDBHistory
from abtest.adapters.sqlite import SqliteStore
from abtest.history import Snapshot, VariantSnapshot, kept_seqs
from tests.adapters.conftest import METRICS_TABLE
from tests.adapters.test_store_contract import ENDPOINT, NOW, config, run_together


@pytest.fixture
def history(store):
    if isinstance(store, SqliteStore):
        return store
    return DynamoDBHistory(METRICS_TABLE, client=store.client)


def stored_count(store, name: str = ENDPOINT) -> int:
    """Snapshot rows or items behind the history, however it reads them."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            query = "SELECT count(*) FROM history WHERE endpoint_name = ?"
            return db.execute(query, (name,)).fetchone()[0]
    items = store.client.scan(TableName=METRICS_TABLE, ConsistentRead=True)["Items"]
    prefix = f"#history#{name}#"
    return sum(i["endpoint_name"]["S"].startswith(prefix) and "snapshot" in i for i in items)


def snapshot(invocations: int, name: str = ENDPOINT, *, at: float = NOW) -> Snapshot:
    return Snapshot(
        endpoint_name=name,
        taken_at=at,
        strategy="TopTwoThompson",
        warming_up=False,
        winner=None,
        reason="too_few_samples",
        variants=(
            VariantSnapshot("Champion1", invocations, 3, 3.0, 0.25, 0.1, 0.08, (0.02, 0.2)),
            VariantSnapshot("Challenger1", invocations, 9, 8.5, 0.75, 0.9, 0.2, (0.1, 0.3)),
        ),
    )


def test_snapshots_read_back_oldest_first_and_numbered(history):
    for i in range(3):
        assert history.record_snapshot(snapshot(10 * i, at=NOW + i), f"obj-{i}", NOW + i)
    found = history.snapshots(ENDPOINT, 10)
    assert [s.seq for s in found] == [1, 2, 3]
    assert found[2] == Snapshot(**{**_fields(snapshot(20, at=NOW + 2)), "seq": 3})


def test_an_object_leaves_one_snapshot_however_often_it_is_recorded(history):
    assert history.record_snapshot(snapshot(10), "obj-1", NOW)
    assert not history.record_snapshot(snapshot(99), "obj-1", NOW + 1)
    assert [s.variants[0].invocation_count for s in history.snapshots(ENDPOINT, 10)] == [10]


def test_limit_gives_the_newest(history):
    for i in range(5):
        history.record_snapshot(snapshot(i), f"obj-{i}", NOW)
    assert [s.seq for s in history.snapshots(ENDPOINT, 2)] == [4, 5]


def test_endpoints_have_their_own_history(history):
    history.record_snapshot(snapshot(1), "obj-1", NOW)
    history.record_snapshot(snapshot(2, "other-endpoint"), "obj-1", NOW)
    assert [s.variants[0].invocation_count for s in history.snapshots(ENDPOINT, 9)] == [1]
    assert [s.endpoint_name for s in history.snapshots("other-endpoint", 9)] == ["other-endpoint"]
    assert history.snapshots("never-aggregated", 9) == []


def test_old_snapshots_are_thinned_and_the_arc_kept(history, store, monkeypatch):
    monkeypatch.setattr(history_module, "RECENT", 4)
    for i in range(1, 41):
        history.record_snapshot(snapshot(i), f"obj-{i}", NOW + i)
    seqs = [s.seq for s in history.snapshots(ENDPOINT, 1000)]
    assert seqs == sorted(kept_seqs(40, 1000))
    # The last RECENT all there, the very first kept, fewer in between:
    assert seqs[-4:] == [37, 38, 39, 40] and seqs[0] == 1 and len(seqs) < 20
    # Dropped for good, not just hidden from reads.
    assert stored_count(store) == len(seqs)


def test_concurrent_writers_get_distinct_numbers(history):
    results = run_together(6, lambda i: history.record_snapshot(snapshot(i), f"obj-{i}", NOW))
    assert results == [True] * 6
    found = history.snapshots(ENDPOINT, 10)
    assert [s.seq for s in found] == [1, 2, 3, 4, 5, 6]
    assert sorted(s.variants[0].invocation_count for s in found) == list(range(6))


def test_history_stays_out_of_the_endpoint_records(history, store):
    store.register_endpoint(config(("Champion1", 1.0), ("Challenger1", 1.0)), NOW)
    history.record_snapshot(snapshot(5), "obj-1", NOW)
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.variant_names == ("Champion1", "Challenger1")
    assert store.get_endpoint(f"#history#{ENDPOINT}") is None


def _fields(s: Snapshot) -> dict:
    return {f: getattr(s, f) for f in Snapshot.__dataclass_fields__}
