"""Evaluate: join an endpoint's event log into rows on disk and estimate policies on them.

The unit is the assignment: an invocation the strategy assigned (`new`) is one random draw
with a logged propensity; later invocations of the same user (`existing`) repeat it,
manual ones were not drawn, and fallback ones assigned nobody (the store was down), so
none of these adds a row. A
conversion credits the assignment its `inference_id` was served under, else (an id the
log never served) the user's latest assignment before it; one flagged `late` (after the
attribution window) credits nothing.

One streaming pass over the objects writes the endpoint's assignments, invocations and
conversions into a SQLite file in a temporary folder, joined there by index; the
estimators then read the rows back in chunks. Memory holds a chunk and SQLite's page
cache, whatever the log's size; the disk holds about 150 bytes per event.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bandit
from abtest.events import CONTEXT_FIELD, CONVERSION, INVOCATION, split_lines
from abtest.ports import EventArchive
from abtest.records import AssignmentKind
from bandit.context_model import fit_reward_model
from bandit.offpolicy import (
    CHUNK_EVENTS,
    UNIFORM,
    Estimate,
    Log,
    OffPolicyError,
    Policy,
    Replay,
    evaluate_policies,
)

_INVOCATION_PREFIX = b'{"type":"' + INVOCATION.encode() + b'"'
_CONVERSION_PREFIX = b'{"type":"' + CONVERSION.encode() + b'"'
# Rows written to SQLite at a time: bounds what a big object holds in memory.
_BATCH = 10_000
# SQLite's page cache, in KiB (negative: a size, not a page count).
_CACHE_KIB = 16_384
# The reward model's features: at most this many context keys (the most frequent), each
# text key one indicator per value for its most frequent values.
MAX_FEATURE_KEYS = 16
MAX_LEVELS = 20
# --by reports one block per value; a key with more values is not a segment.
MAX_SEGMENTS = 20
MISSING_SEGMENT = "(none)"

_SCHEMA = """
CREATE TABLE assignment (
    seq INTEGER PRIMARY KEY,  -- the line's position in the log: its order
    inference_id TEXT UNIQUE, -- a redelivered line is the same assignment
    user_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    variant INTEGER NOT NULL,
    propensity REAL NOT NULL,
    reward REAL NOT NULL DEFAULT 0,
    context TEXT
);
-- Later invocations of an assignment (`existing`): a conversion may name their id.
CREATE TABLE invocation (inference_id TEXT PRIMARY KEY, user_id TEXT, seq INTEGER)
    WITHOUT ROWID;
CREATE TABLE conversion (inference_id TEXT PRIMARY KEY, user_id TEXT, timestamp TEXT,
    reward REAL, late INTEGER) WITHOUT ROWID;
"""
_INDEXES = """
CREATE INDEX assignment_by_user ON assignment (user_id, seq);
CREATE INDEX assignment_by_time ON assignment (user_id, timestamp, seq);
"""

logger = logging.getLogger("abtest")


class EvaluationError(ValueError):
    """The log cannot be evaluated as asked; the message says why in one line."""


class StoredRows:
    """The joined assignments in a SQLite file, read back in log order, chunk by chunk
    (`bandit.offpolicy.Rows`); `where` narrows them to a segment, `features` adds the
    reward model's columns computed from each row's context."""

    def __init__(
        self,
        db: sqlite3.Connection,
        variants: tuple[str, ...],
        *,
        where: tuple[str, tuple] = ("1", ()),
        features: Sequence[str] = (),
    ) -> None:
        self.db, self.variants, self.where, self.features = db, variants, where, tuple(features)
        condition, parameters = where
        self.count = db.execute(
            f"SELECT count(*) FROM assignment WHERE {condition}", parameters
        ).fetchone()[0]

    def __len__(self) -> int:
        return self.count

    def with_features(self, features: Sequence[str]) -> StoredRows:
        return StoredRows(self.db, self.variants, where=self.where, features=features)

    def segment(self, condition: str, parameters: tuple) -> StoredRows:
        where = (f"({self.where[0]}) AND ({condition})", (*self.where[1], *parameters))
        return StoredRows(self.db, self.variants, where=where, features=self.features)

    def chunks(self) -> Iterator[Log]:
        columns = ", ".join(("variant", "propensity", "reward", *self.features))
        condition, parameters = self.where
        cursor = self.db.execute(
            f"SELECT {columns} FROM assignment WHERE {condition} ORDER BY seq", parameters
        )
        while rows := cursor.fetchmany(CHUNK_EVENTS):
            table = np.array(rows, dtype=np.float64)
            yield Log(
                self.variants,
                table[:, 0].astype(np.int64),
                table[:, 2],
                table[:, 1],
                table[:, 3:] if self.features else None,
            )


@dataclass
class EndpointLog:
    """What the pass found: the assignments as rows on disk, and how the conversions joined."""

    endpoint: str
    log: StoredRows
    conversions: int  # distinct conversions of the endpoint in the log, late ones included
    joined_by_id: int
    joined_by_user: int
    unattributed: int  # conversions of users whose assignment is not in the log
    late: int  # conversions flagged late: after the attribution window, not counted
    objects: int
    folder: tempfile.TemporaryDirectory

    def close(self) -> None:
        self.log.db.close()
        self.folder.cleanup()


def read_endpoint_log(
    archive: EventArchive,
    keys: Sequence[str],
    endpoint: str,
    *,
    on_object: Callable[[], object] | None = None,
) -> EndpointLog:
    """Join the endpoint's conversions to its assignments, reading `keys` in order, once."""
    tick = on_object or (lambda: None)
    folder = tempfile.TemporaryDirectory(prefix="abtest-evaluate-")
    db = sqlite3.connect(Path(folder.name) / "log.sqlite3")
    try:
        db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.executescript(_SCHEMA)
        variants: dict[str, int] = {}
        endpoints: set[str] = set()
        writer = _Writer(db)
        position = 0
        for key in keys:
            for number, event in _events(archive, key):
                position += 1
                endpoints.add(event.get("endpoint_name"))
                if event.get("endpoint_name") != endpoint:
                    continue
                try:
                    _store(writer, variants, position, event, endpoint)
                except EvaluationError as error:
                    raise EvaluationError(f"{key} line {number}: {error}") from None
                except (KeyError, TypeError, ValueError) as error:
                    what = f"no {error.args[0]}" if isinstance(error, KeyError) else error
                    raise EvaluationError(
                        f"{key} line {number}: an event of {endpoint} this version cannot "
                        f"read ({what})"
                    ) from None
            tick()
        writer.flush()
        db.executescript(_INDEXES)
        names = tuple(sorted(variants, key=variants.__getitem__))
        rows = StoredRows(db, names)
        if not len(rows):
            seen = ", ".join(sorted(str(e) for e in endpoints)) or "none"
            raise EvaluationError(
                f"no assignment of endpoint {endpoint!r} in the log (endpoints in it: {seen})"
            )
        found = _join(db, endpoint, rows, len(keys), folder)
    except BaseException:
        db.close()
        folder.cleanup()
        raise
    return found


def _store(
    writer: _Writer, variants: dict[str, int], position: int, event: dict, endpoint: str
) -> None:
    """One event of the endpoint into `writer`: an EvaluationError for an assignment whose
    propensity no estimate can weigh by (the caller names the file and line)."""
    if event["type"] == CONVERSION:
        writer.conversion(event)
        return
    kind = event["assignment"]
    if kind == AssignmentKind.NEW:
        propensity = event["propensity"]
        if propensity is None:
            raise EvaluationError(
                f"an assignment of {endpoint} was logged without a propensity; off-policy "
                "estimates need every one"
            )
        if isinstance(propensity, bool) or not isinstance(propensity, int | float):
            raise EvaluationError(f"propensity {propensity!r} is not a number")
        if not 0 < propensity <= 1:
            raise EvaluationError(
                f"an assignment of {endpoint} was logged with propensity {propensity!r}, "
                "not in (0, 1]"
            )
        variant = variants.setdefault(event["variant_name"], len(variants))
        writer.assignment(position, event, variant)  # found by its id too
    elif kind == AssignmentKind.EXISTING:
        writer.invocation(position, event)


class _Writer:
    """Lines into the SQLite tables, a batch at a time."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.assignments: list[tuple] = []
        self.invocations: list[tuple] = []
        self.conversions: list[tuple] = []

    def assignment(self, position: int, event: dict, variant: int) -> None:
        context = event.get(CONTEXT_FIELD)
        self.assignments.append(
            (
                position,
                event["inference_id"],
                event["user_id"],
                event["timestamp"],
                variant,
                float(event["propensity"]),
                None if context is None else json.dumps(context, separators=(",", ":")),
            )
        )
        self._maybe_flush(self.assignments)

    def invocation(self, position: int, event: dict) -> None:
        self.invocations.append((event["inference_id"], event["user_id"], position))
        self._maybe_flush(self.invocations)

    def conversion(self, event: dict) -> None:
        # Fields another version adds (the assignment's assigned_at and propensity) are
        # not needed: the join finds the assignment itself. `late` is honoured.
        self.conversions.append(
            (
                event["inference_id"],
                event["user_id"],
                event["timestamp"],
                float(event.get("reward", 1.0)),
                1 if event.get("late") is True else 0,
            )
        )
        self._maybe_flush(self.conversions)

    def _maybe_flush(self, batch: list) -> None:
        if len(batch) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        # Keyed by inference_id: a redelivered line is the same event, stored once.
        self.db.executemany(
            "INSERT OR IGNORE INTO assignment "
            "(seq, inference_id, user_id, timestamp, variant, propensity, context) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            self.assignments,
        )
        self.db.executemany("INSERT OR IGNORE INTO invocation VALUES (?, ?, ?)", self.invocations)
        self.db.executemany(
            "INSERT OR IGNORE INTO conversion VALUES (?, ?, ?, ?, ?)", self.conversions
        )
        self.assignments.clear()
        self.invocations.clear()
        self.conversions.clear()


def _join(
    db: sqlite3.Connection,
    endpoint: str,
    rows: StoredRows,
    objects: int,
    folder: tempfile.TemporaryDirectory,
) -> EndpointLog:
    """Credit each conversion's reward to its assignment: by id, else by user and time."""
    by_id = by_user = unattributed = late = total = 0
    credits: list[tuple[float, int]] = []
    reader = db.cursor()
    for _, user, timestamp, reward, is_late, served_to, served_at in reader.execute(
        "SELECT c.inference_id, c.user_id, c.timestamp, c.reward, c.late, "
        "coalesce(a.user_id, i.user_id), coalesce(a.seq, i.seq) FROM conversion c "
        "LEFT JOIN assignment a ON a.inference_id = c.inference_id "
        "LEFT JOIN invocation i ON i.inference_id = c.inference_id"
    ):
        total += 1
        if is_late:
            late += 1
            continue
        row = None
        if served_to is not None:
            # The assignment the invocation was served under: its user's latest before it.
            row = db.execute(
                "SELECT seq FROM assignment WHERE user_id = ? AND seq <= ? "
                "ORDER BY seq DESC LIMIT 1",
                (served_to, served_at),
            ).fetchone()
            by_id += row is not None
        if row is None:
            row = db.execute(
                "SELECT seq FROM assignment WHERE user_id = ? AND timestamp <= ? "
                "ORDER BY timestamp DESC, seq DESC LIMIT 1",
                (user, timestamp),
            ).fetchone()
            if row is None:
                unattributed += 1
                continue
            by_user += 1
        credits.append((reward, row[0]))
        if len(credits) >= _BATCH:
            _credit(db, credits)
    _credit(db, credits)
    return EndpointLog(endpoint, rows, total, by_id, by_user, unattributed, late, objects, folder)


def _credit(db: sqlite3.Connection, credits: list[tuple[float, int]]) -> None:
    db.executemany("UPDATE assignment SET reward = reward + ? WHERE seq = ?", credits)
    credits.clear()


def _events(archive: EventArchive, key: str) -> Iterable[tuple[int, dict]]:
    """(line number, event) of the invocation and conversion lines; others are not parsed."""
    number = 0
    for block in archive.read_blocks(key):
        for line in split_lines(block):
            number += 1
            if line.startswith(_INVOCATION_PREFIX) or line.startswith(_CONVERSION_PREFIX):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # aggregation rejects and keeps damaged lines; they never counted
                if isinstance(event, dict):
                    yield number, event


# -- the request context: the reward model's features and the segments -----------------


def _path(key: str) -> str:
    # Context keys are letters, digits, '_' and '-' (abtest.http.invocation_bodies): safe in a path.
    return f"json_extract(context, '$.\"{key}\"')"


def context_features(rows: StoredRows) -> list[str]:
    """SQL expressions of the reward model's features: each numeric context key
    standardised (0 when absent), each other key one indicator per frequent value."""
    db, (condition, parameters) = rows.db, rows.where
    keys = db.execute(
        "SELECT j.key, count(*), sum(j.type IN ('integer', 'real')) "
        f"FROM assignment, json_each(assignment.context) j WHERE {condition} "
        "GROUP BY j.key ORDER BY count(*) DESC, j.key LIMIT ?",
        (*parameters, MAX_FEATURE_KEYS),
    ).fetchall()
    features = []
    for key, count, numeric in keys:
        value = _path(key)
        if numeric == count:
            mean, square = db.execute(
                f"SELECT avg({value}), avg({value} * {value}) FROM assignment "
                f"WHERE {condition} AND {value} IS NOT NULL",
                parameters,
            ).fetchone()
            sd = math.sqrt(max(square - mean * mean, 0.0)) or 1.0
            features.append(f"coalesce(({value} - {mean!r}) / {sd!r}, 0)")
            continue
        levels = db.execute(
            f"SELECT {value} v FROM assignment WHERE {condition} AND v IS NOT NULL "
            "GROUP BY v ORDER BY count(*) DESC, v LIMIT ?",
            (*parameters, MAX_LEVELS),
        ).fetchall()
        for (level,) in levels:
            features.append(f"coalesce({value} = {_literal(level)}, 0)")
    return features


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def segments(rows: StoredRows, key: str) -> list[tuple[str, StoredRows]]:
    """(value, its rows) per value of context `key`; EvaluationError if it has too many."""
    value = _path(key)
    condition, parameters = rows.where
    kind = f"json_type(context, '$.\"{key}\"')"
    found = [
        (v, t)
        for v, t in rows.db.execute(
            f"SELECT DISTINCT {value}, {kind} FROM assignment WHERE {condition} LIMIT ?",
            (*parameters, MAX_SEGMENTS + 2),
        )
        if v is not None
    ]
    if not found:
        raise EvaluationError(f"--by {key}: no assignment in the log carries context.{key}")
    if len(found) > MAX_SEGMENTS:
        raise EvaluationError(
            f"--by {key}: context.{key} has more than {MAX_SEGMENTS} values; "
            "segment by a key with fewer (bucket numbers into ranges in the request)"
        )

    def label(v: object, t: str) -> str:
        return t if t in ("true", "false") else str(v)  # SQLite reads booleans as 1 and 0

    parts = [
        (label(v, t), rows.segment(f"{value} = ? AND {kind} = ?", (v, t)))
        for v, t in sorted(found, key=lambda found: label(*found))
    ]
    missing = rows.segment(f"{value} IS NULL", ())
    if len(missing):
        parts.append((MISSING_SEGMENT, missing))
    return parts


# -- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyEstimate:
    """One row of the report: a target policy, an estimator, its estimate (in a segment)."""

    policy: str
    estimate: Estimate
    segment: str = ""

    def as_dict(self) -> dict:
        e = self.estimate
        return {
            "segment": self.segment,
            "policy": self.policy,
            "estimator": e.estimator,
            "value": e.value,
            "std_error": e.std_error,
            "low": e.low,
            "high": e.high,
            "effective_sample_size": e.effective_sample_size,
            "events": e.events,
            "warnings": list(e.warnings),
        }


def target_policies(
    variants: Sequence[str], strategies: Sequence[str] = (), *, batch_size: int = 1000
) -> dict[str, Policy]:
    """Every variant alone, a uniform split, and each `NAME[:param=value,...]` strategy replayed."""
    policies: dict[str, Policy] = {name: name for name in variants}
    policies[UNIFORM] = UNIFORM
    for spec in strategies:
        try:
            policies[spec] = Replay(_strategy(spec), batch_size)
        except OffPolicyError as error:
            raise EvaluationError(str(error)) from None
    return policies


def _strategy(spec: str) -> bandit.Strategy:
    name, _, rest = spec.partition(":")
    params: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        if not equals:
            raise EvaluationError(
                f"strategy {spec!r}: write parameters as name=value, got {item!r}"
            )
        if key.strip() in params:  # else the last one silently won
            raise EvaluationError(f"strategy {spec!r}: {key.strip()} given twice")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise EvaluationError(f"strategy {spec!r}: {key.strip()} must be a number") from None
    try:
        return bandit.get_strategy(name, params)
    except ValueError as error:  # ParameterError is one
        raise EvaluationError(f"strategy {spec!r}: {error}") from None


def estimate_policies(
    rows: StoredRows,
    policies: dict[str, Policy],
    *,
    level: float = 0.95,
    by: str | None = None,
) -> list[PolicyEstimate]:
    """Every policy's estimates, per value of context `by` when given. With request
    context in the log, DR's reward model is a logistic regression on it."""
    parts = [("", rows)] if by is None else segments(rows, by)
    report = []
    try:
        for segment, part in parts:
            if len(part) < 2:  # one assignment has no spread to estimate
                if by is None:
                    raise EvaluationError(
                        f"{len(part)} assignment(s) in the log: at least 2 are needed for an "
                        "estimate"
                    )
                logger.warning(
                    "segment %s=%s: %d assignment, too few for an estimate; left out",
                    by,
                    segment,
                    len(part),
                )
                continue
            features = context_features(part)
            model = None
            if features:
                part = part.with_features(features)
                model = fit_reward_model(part)
            found = evaluate_policies(part, policies, level=level, reward_model=model)
            report.extend(
                PolicyEstimate(name, estimate, segment)
                for name, estimates in found.items()
                for estimate in estimates
            )
    except OffPolicyError as error:
        raise EvaluationError(str(error)) from None
    if not report:
        raise EvaluationError(f"--by {by}: every segment has a single assignment; no estimate")
    return report


CSV_COLUMNS = (
    "segment",
    "policy",
    "estimator",
    "value",
    "std_error",
    "low",
    "high",
    "effective_sample_size",
    "events",
    "warnings",
)


def write_reports(found: EndpointLog, rows: Sequence[PolicyEstimate], out: Path) -> list[Path]:
    """evaluation.csv (one row per segment, policy and estimator) and evaluation.json."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "evaluation.csv", out / "evaluation.json"
    with csv_path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            record = row.as_dict()
            writer.writerow({**record, "warnings": "; ".join(record["warnings"])})
    summary = {
        "endpoint": found.endpoint,
        "assignments": len(found.log),
        "variants": list(found.log.variants),
        "conversions": found.conversions,
        "joined_by_inference_id": found.joined_by_id,
        "joined_by_user": found.joined_by_user,
        "unattributed": found.unattributed,
        "late": found.late,
        "estimates": [row.as_dict() for row in rows],
    }
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return [csv_path, json_path]


def format_table(found: EndpointLog, rows: Sequence[PolicyEstimate]) -> str:
    """The report for a terminal: one line per policy and estimator, warnings below."""
    late = f", {found.late:,} late" if found.late else ""
    lines = [
        f"{found.endpoint}: {len(found.log):,} assignments, {found.conversions:,} conversions "
        f"({found.joined_by_id:,} by inference_id, {found.joined_by_user:,} by user, "
        f"{found.unattributed:,} unattributed{late})",
    ]
    width = max([24, *(len(row.policy) for row in rows)])  # a long strategy spec fits
    header = f"{'policy':<{width}} {'estimator':<9} {'value':>9} {'95% interval':>21} {'ESS':>10}"
    notes: dict[str, int] = {}
    segment = None
    for row in rows:
        if row.segment != segment:
            segment = row.segment
            lines.extend(([f"segment {segment}"] if segment else []) + [header])
        e = row.estimate
        marks = "".join(f" [{notes.setdefault(w, len(notes) + 1)}]" for w in e.warnings)
        lines.append(
            f"{row.policy:<{width}} {e.estimator:<9} {e.value:>9.4f} "
            f"{f'[{e.low:.4f}, {e.high:.4f}]':>21} {e.effective_sample_size:>10.0f}{marks}"
        )
    lines.extend(f"[{number}] {note}" for note, number in notes.items())
    return "\n".join(lines)
