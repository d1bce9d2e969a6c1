"""The Store on one SQLite file: the embedded runtime's assignments and metrics.

Standard library only. WAL mode lets readers run beside the one writer; every
write is a `BEGIN IMMEDIATE` transaction, so threads and processes sharing the
file queue on the write lock (up to `busy_timeout`) instead of racing: one process's own
threads on the store's gate, woken in turn, other processes by SQLite's busy wait.
Each thread gets its own connection: sqlite3 connections must not be shared.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

from abtest.adapters import nonblocking
from abtest.adapters.sqlite_history import HISTORY_SCHEMA, SqliteHistory
from abtest.config_types import ExperimentSettings
from abtest.errors import StoreUnavailableError
from abtest.events import CONVERSION
from abtest.lifecycle import AUDIT_RETENTION, AuditEntry, Lifecycle, registration_entries
from abtest.records import (
    ACTIVE,
    COUNTERS,
    DELETED,
    Assignment,
    CountsByEndpoint,
    Endpoint,
    EndpointConfig,
    EventKey,
    Figures,
    VariantConfig,
    VariantCounters,
    VariantCounts,
    params_from_epsilon,
)

T = TypeVar("T")

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS assignments (
    endpoint_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    variant_name TEXT NOT NULL,
    strategy TEXT NOT NULL,
    propensity REAL NOT NULL,
    assigned_at REAL NOT NULL,
    ttl INTEGER NOT NULL,
    PRIMARY KEY (endpoint_name, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversions (
    endpoint_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    inference_id TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    counted_by TEXT,
    PRIMARY KEY (endpoint_name, user_id, inference_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint_name TEXT PRIMARY KEY,
    strategy TEXT NOT NULL,
    strategy_params TEXT NOT NULL,  -- a JSON object: parameter name -> value
    warmup INTEGER NOT NULL,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    figures TEXT,  -- a JSON object (Figures), worked out when the counters last changed
    settings TEXT  -- a JSON object (ExperimentSettings); NULL: written before them, defaults
    -- lifecycle TEXT (a JSON Lifecycle; NULL: never changed) is added by _migrate
);
CREATE TABLE IF NOT EXISTS variants (
    endpoint_name TEXT NOT NULL,
    variant_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    initial_variant_weight REAL NOT NULL,
    {counter_columns},
    PRIMARY KEY (endpoint_name, variant_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_name TEXT NOT NULL,
    entry TEXT NOT NULL  -- a JSON object (AuditEntry)
);
CREATE INDEX IF NOT EXISTS audit_log_by_endpoint ON audit_log (endpoint_name, seq);
CREATE TABLE IF NOT EXISTS applied_objects (
    object_key TEXT PRIMARY KEY,
    applied_at REAL NOT NULL
);
"""
    + HISTORY_SCHEMA
)


def _column(counter_name: str) -> str:
    """A counter's column definition (also how a migration adds it to an older file)."""
    if dict(COUNTERS)[counter_name] is int:
        return f"{counter_name} INTEGER NOT NULL DEFAULT 0"
    return f"{counter_name} REAL NOT NULL DEFAULT 0.0"


SCHEMA = SCHEMA.replace("{counter_columns}", ",\n    ".join(_column(c.name) for c in COUNTERS))
_COUNTER_NAMES = ", ".join(f"v.{c.name}" for c in COUNTERS)

# Primary result codes meaning "the file is busy, full, read-only or cannot be reached",
# not a bug in a query: the service answers 503, or falls back where it safely can.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
    }
)

# A write lock another connection holds.
_TAKEN = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

_SELECT_ASSIGNMENT = (
    "SELECT variant_name, strategy, propensity, assigned_at, ttl FROM assignments"
    " WHERE endpoint_name = ? AND user_id = ? AND ttl > ?"
)
# One statement, so the endpoint row and its variants come from one snapshot.
_SELECT_ENDPOINT = (
    "SELECT e.strategy, e.strategy_params, e.warmup, e.status, e.updated_at, e.figures,"
    " e.lifecycle, e.settings, v.variant_name, v.initial_variant_weight,"
    f" {_COUNTER_NAMES}"
    " FROM endpoints e LEFT JOIN variants v ON v.endpoint_name = e.endpoint_name"
    " WHERE e.endpoint_name = ? ORDER BY v.position"
)


class SqliteStore(SqliteHistory):
    """Store adapter over one SQLite file, safe for concurrent threads and processes; the
    endpoints' history too (`SqliteHistory`)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        """Open (creating if needed) the database at `path`; the folder must exist.

        `busy_timeout` is how long, in seconds, a write waits for the lock
        before the store is reported unavailable.
        """
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        # Weak, so a finished thread's connection closes with its thread-local data.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        # This process's writers, one at a time (see `_transaction`); made anew in a fork.
        self._gate, self._gate_pid = nonblocking.WriteGate(), os.getpid()
        with _translated():
            self._connection().executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
        self._migrate()

    # -- connections -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # Keyed by pid too: a forked child must never reuse its parent's connection.
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            return db
        db = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # only so close() can close every thread's connection
            factory=_Connection,
        )
        db.pid = os.getpid()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        self._local.db, self._local.pid = db, db.pid
        self._local.closer = _CloseWithThread(db)
        with self._lock:
            self._connections.add(db)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front, so it cannot deadlock later.

        This process's writers queue on the store's gate first (`WriteGate`: woken at its
        release, where SQLite's own wait polls), so SQLite's busy timeout is only ever spent
        on another process's lock. On the event loop it never queues: a gate or lock taken is
        WouldBlock before anything is written (the caller waits for the gate, or retries on
        a thread)."""
        with _translated():
            db = self._connection()
            if self._gate_pid != db.pid:  # a forked child: the parent's holder is not here
                self._gate, self._gate_pid = nonblocking.WriteGate(), db.pid
            gate = self._gate
            on_the_loop = nonblocking.is_on_the_loop()
            if on_the_loop:
                if not gate.try_take():
                    raise nonblocking.WouldBlock("the store's write gate is taken", gate.when_free)
            elif not gate.take(self.busy_timeout):
                held = f"the write lock was held over {self.busy_timeout:g} s"
                raise StoreUnavailableError(f"SQLite store unavailable: {held}")
            try:
                if db.waits_for_lock == on_the_loop:
                    wait_ms = 0 if on_the_loop else int(self.busy_timeout * 1000)
                    db.execute(f"PRAGMA busy_timeout = {wait_ms}")
                    db.waits_for_lock = not on_the_loop
                try:
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as error:
                    if on_the_loop and getattr(error, "sqlite_errorcode", 0) & 0xFF in _TAKEN:
                        raise nonblocking.WouldBlock("the SQLite write lock is taken") from None
                    raise
                try:
                    yield db
                    db.execute("COMMIT")
                finally:
                    if db.in_transaction:  # the body or the COMMIT failed
                        db.execute("ROLLBACK")
            finally:
                gate.give_back()

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with _translated():
            return query(self._connection())

    def close(self) -> None:
        """Close every connection this store opened in this process (in any thread)."""
        with self._lock:
            connections, self._connections = list(self._connections), weakref.WeakSet()
        for db in connections:
            if db.pid == os.getpid():  # a parent's connection is the parent's to close
                db.close()
        self._local = threading.local()

    def _migrate(self) -> None:
        """Bring a file written by an earlier version up to this schema, once, in one
        transaction (another process opening the same file at the same time finds the
        work done)."""
        if not self._read(_outdated):  # the usual case: no write lock taken
            return
        with self._transaction() as db:
            if not _outdated(db):
                return
            if "figures" not in _columns(db, "endpoints"):
                db.execute("ALTER TABLE endpoints ADD COLUMN figures TEXT")
            if "lifecycle" not in _columns(db, "endpoints"):
                # Every file gets it here, new ones too: one way in, whatever wrote the file.
                db.execute("ALTER TABLE endpoints ADD COLUMN lifecycle TEXT")
            if "settings" not in _columns(db, "endpoints"):
                db.execute("ALTER TABLE endpoints ADD COLUMN settings TEXT")
            # Counters declared since the file was written start at 0; the others are kept.
            for name in _missing_counters(db):
                db.execute(f"ALTER TABLE variants ADD COLUMN {_column(name)}")
            if "counted_by" not in _columns(db, "conversions"):
                db.execute("ALTER TABLE conversions ADD COLUMN counted_by TEXT")
            if "epsilon" in _columns(db, "endpoints"):
                # An `epsilon` column for every strategy becomes `strategy_params`.
                db.execute(
                    "ALTER TABLE endpoints ADD COLUMN strategy_params TEXT NOT NULL DEFAULT '{}'"
                )
                rows = db.execute(
                    "SELECT endpoint_name, strategy, epsilon FROM endpoints"
                ).fetchall()
                db.executemany(
                    "UPDATE endpoints SET strategy_params = ? WHERE endpoint_name = ?",
                    [
                        (json.dumps(params_from_epsilon(strategy, epsilon)), name)
                        for name, strategy, epsilon in rows
                    ],
                )
                db.execute("ALTER TABLE endpoints DROP COLUMN epsilon")

    # -- assignments -------------------------------------------------------

    def get_assignment(self, endpoint_name: str, user_id: str, now: float) -> Assignment | None:
        row = self._read(
            lambda db: db.execute(_SELECT_ASSIGNMENT, (endpoint_name, user_id, now)).fetchone()
        )
        return _assignment(endpoint_name, user_id, row) if row else None

    def create_assignment(self, assignment: Assignment, now: float) -> Assignment:
        a = assignment
        with self._transaction() as db:
            db.execute(
                "INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (endpoint_name, user_id) DO UPDATE SET"
                " variant_name = excluded.variant_name, strategy = excluded.strategy,"
                " propensity = excluded.propensity, assigned_at = excluded.assigned_at,"
                " ttl = excluded.ttl"
                " WHERE assignments.ttl <= ?",
                (
                    a.endpoint_name,
                    a.user_id,
                    a.variant_name,
                    a.strategy,
                    a.propensity,
                    a.assigned_at,
                    a.ttl,
                    now,
                ),
            )
            row = db.execute(
                "SELECT variant_name, strategy, propensity, assigned_at, ttl FROM assignments"
                " WHERE endpoint_name = ? AND user_id = ?",
                (a.endpoint_name, a.user_id),
            ).fetchone()
        return _assignment(a.endpoint_name, a.user_id, row)

    def conversion_logged(
        self, endpoint_name: str, user_id: str, inference_id: str, now: float
    ) -> bool:
        row = self._read(
            lambda db: db.execute(
                "SELECT 1 FROM conversions WHERE endpoint_name = ? AND user_id = ?"
                " AND inference_id = ? AND ttl > ?",
                (endpoint_name, user_id, inference_id, now),
            ).fetchone()
        )
        return row is not None

    def mark_conversion_logged(
        self, endpoint_name: str, user_id: str, inference_id: str, ttl: int, now: float
    ) -> None:
        with self._transaction() as db:
            # An expired marker is a new conversion: its old claim goes with it.
            db.execute(
                "INSERT INTO conversions (endpoint_name, user_id, inference_id, ttl)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (endpoint_name, user_id, inference_id)"
                " DO UPDATE SET"
                " counted_by = CASE WHEN ttl <= ? THEN NULL ELSE counted_by END,"
                " ttl = max(ttl, excluded.ttl)",
                (endpoint_name, user_id, inference_id, ttl, now),
            )

    def claim_events(
        self, object_key: str, keys: Sequence[EventKey], ttl: int, now: float
    ) -> set[EventKey]:
        with self._transaction() as db:
            before = db.total_changes
            # Every row this object may count is written (a no-op rewrite for its own earlier
            # claims), so the change count says at once whether all of them were claimed:
            # the usual case needs no read. One statement per key here, not a join, since an
            # object can hold tens of thousands of conversions. In the table's order, so each
            # write lands next to the one before: 40,000 claims into a table of a million
            # took 0.35 s of CPU, sorting included, instead of 0.59 s in the order logged.
            # Sorted by user, then (stably) by endpoint: one string key a pass is what
            # `list.sort` compares fastest; whole tuples cost more than they saved.
            rows = [(*_claim_row(key), ttl, object_key, now) for key in keys]
            rows.sort(key=itemgetter(1))
            rows.sort(key=itemgetter(0))
            db.executemany(
                "INSERT INTO conversions VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (endpoint_name, user_id, inference_id) DO UPDATE SET"
                " counted_by = excluded.counted_by, ttl = max(ttl, excluded.ttl)"
                " WHERE counted_by IS NULL OR counted_by = excluded.counted_by OR ttl <= ?",
                rows,
            )
            if db.total_changes - before == len(keys):
                return set(keys)
            # Some were counted by another object (a conversion logged twice): find which.
            return {
                key
                for key in keys
                if db.execute(
                    "SELECT counted_by FROM conversions WHERE endpoint_name = ? AND user_id = ?"
                    " AND inference_id = ?",
                    _claim_row(key),
                ).fetchone()
                == (object_key,)
            }

    def purge_expired(self, now: float) -> int:
        """Delete expired assignments and conversion markers; how many rows went.

        DynamoDB's TTL does this on AWS. Applied-object records are kept: the local
        event log re-aggregates its sealed files at every start and relies on them.
        """
        with self._transaction() as db:
            gone = db.execute("DELETE FROM assignments WHERE ttl <= ?", (now,)).rowcount
            return gone + db.execute("DELETE FROM conversions WHERE ttl <= ?", (now,)).rowcount

    # -- endpoints ---------------------------------------------------------

    def get_endpoint(self, endpoint_name: str) -> Endpoint | None:
        rows = self._read(lambda db: db.execute(_SELECT_ENDPOINT, (endpoint_name,)).fetchall())
        return _endpoint(endpoint_name, rows)

    def register_endpoint(self, config: EndpointConfig, now: float) -> Endpoint:
        names = [v.name for v in config.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variant names in {config.endpoint_name}: {names}")
        name = config.endpoint_name
        with self._transaction() as db:
            db.execute(
                "INSERT INTO endpoints (endpoint_name, strategy, strategy_params, warmup, status,"
                " updated_at, settings) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (endpoint_name) DO UPDATE SET strategy = excluded.strategy,"
                " strategy_params = excluded.strategy_params, warmup = excluded.warmup,"
                " status = excluded.status, updated_at = excluded.updated_at,"
                " settings = excluded.settings",
                (
                    name,
                    config.strategy,
                    json.dumps(config.strategy_params),
                    config.warmup,
                    ACTIVE,
                    now,
                    config.settings.to_json(),
                ),
            )
            # No variant is deleted: one the config dropped is retired (unless a person added
            # it), so its counters stay and its logged events still count.
            stored = _endpoint(name, db.execute(_SELECT_ENDPOINT, (name,)).fetchall())
            assert stored is not None  # upserted above
            others = [v for v in stored.variant_names if v not in names]
            db.executemany(
                "INSERT INTO variants (endpoint_name, variant_name, position,"
                " initial_variant_weight) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (endpoint_name, variant_name) DO UPDATE SET"
                " position = excluded.position,"
                " initial_variant_weight = excluded.initial_variant_weight",
                [(name, v.name, i, v.initial_weight) for i, v in enumerate(config.variants)],
            )
            db.executemany(
                "UPDATE variants SET position = ? WHERE endpoint_name = ? AND variant_name = ?",
                [(len(names) + i, name, v) for i, v in enumerate(others)],
            )
            before = stored.lifecycle
            after = before.registered(tuple(names), stored.variant_names)
            if after is not before:
                self._write_lifecycle(db, name, after, registration_entries(before, after, now))
            rows = db.execute(_SELECT_ENDPOINT, (name,)).fetchall()
        endpoint = _endpoint(name, rows)
        assert endpoint is not None  # written in the transaction above
        return endpoint

    def deregister_endpoint(self, endpoint_name: str, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE endpoints SET status = ?, updated_at = ? WHERE endpoint_name = ?",
                (DELETED, now, endpoint_name),
            )

    def apply_counts(self, object_key: str, counts: CountsByEndpoint, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO applied_objects VALUES (?, ?) ON CONFLICT DO NOTHING",
                (object_key, now),
            )
            if cursor.rowcount != 1:
                return False
            # Unknown endpoints or variants match no row: ignored, as the port says.
            db.executemany(
                _ADD_COUNTS,
                [
                    (*(getattr(d, c.name) for c in COUNTERS), endpoint, variant)
                    for endpoint, by_variant in counts.items()
                    for variant, d in by_variant.items()
                ],
            )
        return True

    def save_figures(self, endpoint_name: str, figures: Figures) -> bool:
        with self._transaction() as db:
            current = _endpoint(
                endpoint_name, db.execute(_SELECT_ENDPOINT, (endpoint_name,)).fetchall()
            )
            if current is None or current.basis != figures.basis:
                return False
            db.execute(
                "UPDATE endpoints SET figures = ? WHERE endpoint_name = ?",
                (figures.to_json(), endpoint_name),
            )
        return True

    # -- lifecycle ---------------------------------------------------------

    def change_lifecycle(
        self,
        endpoint_name: str,
        expected: Lifecycle,
        new: Lifecycle,
        entry: AuditEntry,
        new_variant: VariantConfig | None = None,
    ) -> bool:
        with self._transaction() as db:
            # NULL is a record no change has touched: the default lifecycle.
            changed = db.execute(
                "UPDATE endpoints SET lifecycle = ?"
                " WHERE endpoint_name = ? AND coalesce(lifecycle, ?) = ?",
                (new.to_json(), endpoint_name, Lifecycle().to_json(), expected.to_json()),
            ).rowcount
            if changed != 1:
                return False
            if new_variant is not None:  # last in order; a row already there keeps its counters
                db.execute(
                    "INSERT INTO variants (endpoint_name, variant_name, position,"
                    " initial_variant_weight) VALUES (?, ?, (SELECT coalesce(max(position) + 1,"
                    " 0) FROM variants WHERE endpoint_name = ?), ?) ON CONFLICT DO NOTHING",
                    (endpoint_name, new_variant.name, endpoint_name, new_variant.initial_weight),
                )
            self._append_audit(db, endpoint_name, entry)
        return True

    def _write_lifecycle(
        self,
        db: sqlite3.Connection,
        endpoint_name: str,
        new: Lifecycle,
        entries: list[AuditEntry],
    ) -> None:
        """Within a transaction that read the stored lifecycle: replace it, log `entries`."""
        db.execute(
            "UPDATE endpoints SET lifecycle = ? WHERE endpoint_name = ?",
            (new.to_json(), endpoint_name),
        )
        for entry in entries:
            self._append_audit(db, endpoint_name, entry)

    @staticmethod
    def _append_audit(db: sqlite3.Connection, endpoint_name: str, entry: AuditEntry) -> None:
        db.execute(
            "INSERT INTO audit_log (endpoint_name, entry) VALUES (?, ?)",
            (endpoint_name, entry.to_json()),
        )
        db.execute(
            "DELETE FROM audit_log WHERE endpoint_name = ? AND seq <= (SELECT seq"
            " FROM audit_log WHERE endpoint_name = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (endpoint_name, endpoint_name, AUDIT_RETENTION),
        )

    def audit_log(self, endpoint_name: str) -> list[AuditEntry]:
        rows = self._read(
            lambda db: db.execute(
                "SELECT entry FROM audit_log WHERE endpoint_name = ? ORDER BY seq",
                (endpoint_name,),
            ).fetchall()
        )
        return [AuditEntry.from_json(entry) for (entry,) in rows]

    def endpoint_names(self) -> list[str]:
        rows = self._read(
            lambda db: db.execute("SELECT endpoint_name FROM endpoints ORDER BY 1").fetchall()
        )
        return [name for (name,) in rows]


def _claim_row(key: EventKey) -> tuple[str, str, str]:
    """The conversions table's key for `key`. Conversions keep their endpoint's name (the
    request path's marker is the same row); other event types get `endpoint#type`, which
    no endpoint can be called (`#` is not allowed in a name)."""
    endpoint = key.endpoint_name
    if key.event_type != CONVERSION:
        endpoint = f"{endpoint}#{key.event_type}"
    return endpoint, key.user_id, key.inference_id


_ADD_COUNTS = (
    "UPDATE variants SET "
    + ", ".join(f"{c.name} = {c.name} + ?" for c in COUNTERS)
    + " WHERE endpoint_name = ? AND variant_name = ?"
)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _missing_counters(db: sqlite3.Connection) -> list[str]:
    present = _columns(db, "variants")
    return [c.name for c in COUNTERS if c.name not in present]


def _outdated(db: sqlite3.Connection) -> bool:
    """Written before conversion claims, strategy parameters, stored figures, lifecycles,
    experiment settings or one of the counters."""
    endpoints = _columns(db, "endpoints")
    return (
        "counted_by" not in _columns(db, "conversions")
        or "epsilon" in endpoints
        or "figures" not in endpoints
        or "lifecycle" not in endpoints
        or "settings" not in endpoints
        or bool(_missing_counters(db))
    )


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced and knows the process that opened it."""

    pid: int
    waits_for_lock = True  # its busy timeout is the store's (else 0: on the event loop)


class _CloseWithThread:
    """Held only by a thread's local data, so it goes (by reference count) when the thread
    ends and closes that thread's connection. The connection itself sits in a reference
    cycle (its statement cache refers back to it): left alone, its files would stay open
    until a garbage collection happened to run."""

    __slots__ = ("db",)

    def __init__(self, db: _Connection) -> None:
        self.db = db

    def __del__(self, getpid=os.getpid) -> None:
        if self.db.pid == getpid():  # a parent's connection is the parent's to close
            self.db.close()


@contextmanager
def _translated() -> Iterator[None]:
    """Busy, locked, full, read-only or unreadable files become StoreUnavailableError."""
    try:
        yield
    except sqlite3.DatabaseError as error:  # "not a database" is no OperationalError
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
            raise StoreUnavailableError(f"SQLite store unavailable: {error}") from error
        raise


def _assignment(endpoint_name: str, user_id: str, row: tuple) -> Assignment:
    variant_name, strategy, propensity, assigned_at, ttl = row
    return Assignment(endpoint_name, user_id, variant_name, strategy, propensity, assigned_at, ttl)


def _endpoint(endpoint_name: str, rows: list[tuple]) -> Endpoint | None:
    if not rows:
        return None
    strategy, params, warmup, status, updated_at, figures, lifecycle, settings = rows[0][:8]
    variants = tuple(
        VariantCounters(name, weight, VariantCounts(*counts))
        for name, weight, *counts in (row[8:] for row in rows)
        if name is not None
    )
    return Endpoint(
        endpoint_name,
        strategy,
        json.loads(params),
        warmup,
        variants,
        status,
        updated_at,
        figures=Figures.from_json(figures) if figures is not None else None,
        lifecycle=Lifecycle.from_json(lifecycle),
        settings=ExperimentSettings.from_json(settings),
    )
