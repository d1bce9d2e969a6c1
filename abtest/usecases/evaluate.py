"""Evaluate: read an endpoint's event log into a bandit.offpolicy.Log and estimate policies.

The unit is the assignment: an invocation the strategy assigned (`new`) is one random draw
with a logged propensity; later invocations of the same user (`existing`) repeat it, and
manual or fallback ones were not drawn by the strategy, so neither adds a row. A
conversion credits the assignment its `inference_id` was served under, else (an id the
log never served) the user's latest assignment before it.

Two streaming passes over the objects, so memory holds no line: the first keeps the
conversions (few, next to invocations), the second one small row per assignment (variant
index, propensity, reward: 18 bytes) and the assignments of converting users only.
"""

from __future__ import annotations

import csv
import json
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import bandit
from abtest.events import CONVERSION, INVOCATION, split_lines
from abtest.ports import EventArchive
from abtest.records import AssignmentKind
from bandit.offpolicy import (
    UNIFORM,
    Estimate,
    Log,
    OffPolicyError,
    Policy,
    evaluate,
    strategy_probabilities,
)

_INVOCATION_PREFIX = b'{"type":"' + INVOCATION.encode() + b'"'
_CONVERSION_PREFIX = b'{"type":"' + CONVERSION.encode() + b'"'


class EvaluationError(ValueError):
    """The log cannot be evaluated as asked; the message says why in one line."""


@dataclass
class EndpointLog:
    """What the passes found: the assignments as a Log, and how the conversions joined."""

    endpoint: str
    log: Log
    conversions: int  # distinct conversions of the endpoint in the log
    joined_by_id: int
    joined_by_user: int
    unattributed: int  # conversions of users whose assignment is not in the log
    objects: int


@dataclass
class _Conversion:
    user_id: str
    timestamp: str
    reward: float
    joined: bool = False


@dataclass
class _Rows:
    """Growing columns of the assignments: compact arrays, not a Python object per row."""

    variants: list[str] = field(default_factory=list)
    actions: array = field(default_factory=lambda: array("h"))
    propensities: array = field(default_factory=lambda: array("d"))
    rewards: array = field(default_factory=lambda: array("d"))

    def add(self, variant: str, propensity: float) -> int:
        if variant not in self.variants:
            self.variants.append(variant)
        self.actions.append(self.variants.index(variant))
        self.propensities.append(propensity)
        self.rewards.append(0.0)
        return len(self.actions) - 1


def read_endpoint_log(
    archive: EventArchive,
    keys: Sequence[str],
    endpoint: str,
    *,
    on_object: Callable[[], object] | None = None,
) -> EndpointLog:
    """Join the endpoint's conversions to its assignments, reading `keys` in order, twice."""
    tick = on_object or (lambda: None)
    conversions: dict[str, _Conversion] = {}
    endpoints: set[str] = set()
    for key in keys:
        for _, event in _events(archive, key, _CONVERSION_PREFIX):
            endpoints.add(event["endpoint_name"])
            if event["endpoint_name"] == endpoint:
                # Keyed by id: a redelivered line is the same conversion, counted once.
                conversions.setdefault(
                    event["inference_id"],
                    _Conversion(event["user_id"], event["timestamp"], float(event["reward"])),
                )
        tick()
    converting = {c.user_id for c in conversions.values()}
    current: dict[str, int] = {}  # converting user -> row of their latest assignment
    history: dict[str, list[tuple[str, int]]] = {}  # converting user -> (timestamp, row)
    rows = _Rows()
    by_id = 0
    for key in keys:
        for number, event in _events(archive, key, _INVOCATION_PREFIX):
            endpoints.add(event["endpoint_name"])
            if event["endpoint_name"] != endpoint:
                continue
            kind, user = event["assignment"], event["user_id"]
            if kind == AssignmentKind.NEW:
                if event["propensity"] is None:
                    raise EvaluationError(
                        f"{key} line {number}: an assignment of {endpoint} was logged without "
                        "a propensity; off-policy estimates need every one"
                    )
                row = rows.add(event["variant_name"], float(event["propensity"]))
                if user in converting:
                    current[user] = row
                    history.setdefault(user, []).append((event["timestamp"], row))
            elif kind != AssignmentKind.EXISTING:
                continue
            conversion = conversions.get(event["inference_id"])
            if conversion is not None and not conversion.joined and user in current:
                rows.rewards[current[user]] += conversion.reward
                conversion.joined = True
                by_id += 1
        tick()
    if not rows.actions:
        seen = ", ".join(sorted(endpoints)) or "none"
        raise EvaluationError(
            f"no assignment of endpoint {endpoint!r} in the log (endpoints in it: {seen})"
        )
    by_user = unattributed = 0
    for conversion in conversions.values():
        if conversion.joined:
            continue
        assigned = history.get(conversion.user_id, [])
        at = bisect_right(assigned, (conversion.timestamp, len(rows.actions)))
        if at == 0:
            unattributed += 1
            continue
        rows.rewards[assigned[at - 1][1]] += conversion.reward
        by_user += 1
    # The columns as they are (Log.of would take a name per row): checked the same way.
    log = Log(
        tuple(rows.variants),
        np.frombuffer(rows.actions, dtype=np.int16).astype(np.int64),
        np.frombuffer(rows.rewards, dtype=np.float64),
        np.frombuffer(rows.propensities, dtype=np.float64),
    )
    try:
        log.check()
    except OffPolicyError as error:
        raise EvaluationError(f"{endpoint}: {error}") from None
    return EndpointLog(
        endpoint, log, len(conversions), by_id, by_user, unattributed, objects=len(keys)
    )


def _events(archive: EventArchive, key: str, prefix: bytes) -> Iterable[tuple[int, dict]]:
    """(line number, event) of the lines of one type; other lines are not parsed."""
    number = 0
    for block in archive.read_blocks(key):
        for line in split_lines(block):
            number += 1
            if line.startswith(prefix):
                try:
                    yield number, json.loads(line)
                except ValueError:
                    continue  # aggregation rejects and keeps damaged lines; they never counted


@dataclass(frozen=True)
class PolicyEstimate:
    """One row of the report: a target policy, an estimator, its estimate."""

    policy: str
    estimate: Estimate

    def as_dict(self) -> dict:
        e = self.estimate
        return {
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
    log: Log, strategies: Sequence[str] = (), *, batch_size: int = 1000
) -> dict[str, Policy]:
    """Every variant alone, a uniform split, and each `NAME[:param=value,...]` strategy replayed."""
    policies: dict[str, Policy] = {name: name for name in log.variants}
    policies[UNIFORM] = UNIFORM
    for spec in strategies:
        policies[spec] = strategy_probabilities(log, _strategy(spec), batch_size=batch_size)
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
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise EvaluationError(f"strategy {spec!r}: {key.strip()} must be a number") from None
    try:
        return bandit.get_strategy(name, params)
    except ValueError as error:  # ParameterError is one
        raise EvaluationError(f"strategy {spec!r}: {error}") from None


def estimate_policies(
    log: Log, policies: dict[str, Policy], *, level: float = 0.95
) -> list[PolicyEstimate]:
    try:
        return [
            PolicyEstimate(name, estimate)
            for name, policy in policies.items()
            for estimate in evaluate(log, policy, level=level)
        ]
    except OffPolicyError as error:
        raise EvaluationError(str(error)) from None


CSV_COLUMNS = (
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
    """evaluation.csv (one row per policy and estimator) and evaluation.json under `out`."""
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
        "estimates": [row.as_dict() for row in rows],
    }
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return [csv_path, json_path]


def format_table(found: EndpointLog, rows: Sequence[PolicyEstimate]) -> str:
    """The report for a terminal: one line per policy and estimator, warnings below."""
    lines = [
        f"{found.endpoint}: {len(found.log):,} assignments, {found.conversions:,} conversions "
        f"({found.joined_by_id:,} by inference_id, {found.joined_by_user:,} by user, "
        f"{found.unattributed:,} unattributed)",
        f"{'policy':<24} {'estimator':<9} {'value':>9} {'95% interval':>21} {'ESS':>10}",
    ]
    notes: dict[str, int] = {}
    for row in rows:
        e = row.estimate
        marks = "".join(f" [{notes.setdefault(w, len(notes) + 1)}]" for w in e.warnings)
        lines.append(
            f"{row.policy:<24} {e.estimator:<9} {e.value:>9.4f} "
            f"{f'[{e.low:.4f}, {e.high:.4f}]':>21} {e.effective_sample_size:>10.0f}{marks}"
        )
    lines.extend(f"[{number}] {note}" for note, number in notes.items())
    return "\n".join(lines)
