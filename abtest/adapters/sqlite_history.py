"""The History port on the SQLite store's file: its own two tables, beside the metrics.

  history          (endpoint_name, seq) -> the snapshot, as JSON
  history_objects  (endpoint_name, object_key): the objects that left a snapshot, kept
                   like `applied_objects`, so one object never leaves two

`SqliteStore` takes these methods (and `HISTORY_SCHEMA` into its schema), so the history
shares its connections and its write lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from abtest.history import Snapshot, thinned_by

T = TypeVar("T")

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    endpoint_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    snapshot TEXT NOT NULL,  -- a JSON object (abtest.history.Snapshot)
    PRIMARY KEY (endpoint_name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_objects (
    endpoint_name TEXT NOT NULL,
    object_key TEXT NOT NULL,
    PRIMARY KEY (endpoint_name, object_key)
) WITHOUT ROWID;
"""


class SqliteHistory:
    """`abtest.history.History` for `SqliteStore`: a mixin over its transactions."""

    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _read: Callable[[Callable[[sqlite3.Connection], T]], T]

    def record_snapshot(self, snapshot: Snapshot, object_key: str, now: float) -> bool:
        name = snapshot.endpoint_name
        with self._transaction() as db:
            marked = db.execute(
                "INSERT INTO history_objects VALUES (?, ?) ON CONFLICT DO NOTHING",
                (name, object_key),
            )
            if marked.rowcount != 1:
                return False
            # The latest is never thinned, so the highest number is the latest written.
            (latest,) = db.execute(
                "SELECT coalesce(max(seq), 0) FROM history WHERE endpoint_name = ?", (name,)
            ).fetchone()
            seq = latest + 1
            db.execute("INSERT INTO history VALUES (?, ?, ?)", (name, seq, snapshot.to_json()))
            db.executemany(
                "DELETE FROM history WHERE endpoint_name = ? AND seq = ?",
                [(name, dropped) for dropped in thinned_by(seq)],
            )
        return True

    def snapshots(self, endpoint_name: str, limit: int) -> list[Snapshot]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT seq, snapshot FROM history WHERE endpoint_name = ?"
                " ORDER BY seq DESC LIMIT ?",
                (endpoint_name, limit),
            ).fetchall()
        )
        return [Snapshot.from_json(endpoint_name, seq, text) for seq, text in reversed(rows)]
