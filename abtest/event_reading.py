"""How aggregation reads event lines: what each adds to its variant's counters (the same
rules on both paths), and the fast path's regex, generated from the lines' declaration in
`abtest.events`. Apart from the declaration and the writers, which the request path
imports: a function that only writes events compiles none of this at its cold start.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable
from functools import cached_property
from itertools import repeat
from typing import Any, NamedTuple

from abtest.events import (
    CONTEXT_KEY,
    CONVERSION,
    ERROR,
    EVENT_TYPES,
    FIRST_CONVERSION,
    INVOCATION,
    MAX_CONTEXT_KEYS,
    OUTCOMES,
    UNCOUNTED_ASSIGNMENTS,
    EventType,
    Field,
    Kind,
    reward_problem,
)
from abtest.records import AssignmentKind, EventKey, VariantCounts, latency_counter


def invocation_delta(
    assignment: str,
    propensity: Any,
    n: int = 1,
    *,
    latency_ms: float | None = None,
    outcome: str | None = None,
    bucket: str | None = None,
) -> VariantCounts | None:
    """What `n` equal invocations add: None if logged only (manual, fallback, without a
    model call's latency and outcome); a new assignment is a user, weighted 1/p by its
    logged propensity p.

    A failed call counts as its assignment's trial like a served one (intent to treat):
    the user was drawn with propensity p whatever the model then did, and leaving the
    failures out would keep only the users a failing variant happened to serve, so its
    weighted estimate would overstate it. Its user's conversions, if any, count as usual.
    Every call logged with an outcome adds to the variant's guardrail counters (its
    latency bucket, and `model_errors` if it failed), the manual and fallback ones too:
    they are calls of the same model. `bucket` is the latency's counter when the caller
    already knows it (`latency_counter`), in place of `latency_ms`.
    """
    guardrail: dict[str, int] = {}
    if latency_ms is not None:
        bucket = latency_counter(latency_ms)
    if bucket is not None:
        guardrail[bucket] = n
    if outcome == ERROR:
        guardrail["model_errors"] = n
    if assignment in UNCOUNTED_ASSIGNMENTS:
        return VariantCounts(**guardrail) if guardrail else None
    if assignment != AssignmentKind.NEW:
        return VariantCounts(invocation_count=n, **guardrail)
    weight = _weight(propensity)
    return VariantCounts(
        invocation_count=n,
        users=n,
        weight_sum=n * weight,
        weight_sq_sum=n * weight * weight,
        **guardrail,
    )


def conversion_deltas(
    reward: float, *, late: bool, propensity: Any, first: bool
) -> tuple[VariantCounts, VariantCounts | None]:
    """(what the conversion adds, what it adds if it is its assignment's first conversion).

    A late one only counts as late. `first` is False for a line logged before conversions
    carried their assignment: it counts as a conversion (as the invocation unit always
    did), never as late, and never as a user's. So does one whose assignment the
    experiment did not randomize (logged with a null propensity: a paused or concluded
    endpoint's), since its user is no trial of the experiment.
    """
    if late:
        return VariantCounts(late_conversions=1), None
    square = reward * reward
    delta = VariantCounts(conversion_count=1, reward_sum=reward, reward_sq_sum=square)
    weight = _weight(propensity)
    if not first or weight == 0.0:
        return delta, None
    return delta, VariantCounts(
        converted_users=1,
        user_reward_sum=reward,
        user_reward_sq_sum=square,
        weighted_reward_sum=reward * weight,
        weighted_reward_cross_sum=reward * weight * weight,
        weighted_reward_sq_sum=square * weight * weight,
    )


def _weight(propensity: Any) -> float:
    """1/p; 0 (left out of the weighted sums) for a propensity that is no probability."""
    if _a_number(propensity) and 0.0 < propensity <= 1.0:
        return 1.0 / propensity
    return 0.0


def captured_weights(propensities: list[bytes]) -> list[float]:
    """`_weight` of each propensity as the fast path captures it (a JSON number or null):
    in C when every one is a probability, as the service logs them (a call per line took
    twice as long), else one by one."""
    if b"null" not in propensities:
        values = list(map(float, propensities))
        if values and min(values) > 0.0 and max(values) <= 1.0:
            return list(map(operator.truediv, repeat(1.0), values))
    return [_weight(None if p == b"null" else float(p)) for p in propensities]


class InvalidEvent(ValueError):
    """A delivered line that is not an event aggregation can count; the message is the reason."""


class EventDelta(NamedTuple):
    """What one line adds to its variant: `delta` (None for a logged-only invocation);
    `key` names an event counted once however often logged (every conversion that carries
    its ids; with `key_invocations`, every counted invocation); `first` is the assignment's
    first-conversion claim and what it adds, if the conversion may be that first one."""

    endpoint_name: str
    variant_name: str
    delta: VariantCounts | None
    key: EventKey | None = None
    first: tuple[EventKey, VariantCounts] | None = None


def event_delta(
    event: Any, reward_kind: Callable[[str, str], str], *, key_invocations: bool = False
) -> EventDelta:
    """What one parsed line adds. `reward_kind(endpoint, variant)` is the endpoint's reward
    kind, or raises InvalidEvent saying why the variant can take no counts."""
    if not isinstance(event, dict):
        raise InvalidEvent("not a JSON object")
    endpoint_name = event.get("endpoint_name")
    variant_name = event.get("variant_name")
    if not isinstance(endpoint_name, str) or not endpoint_name:
        raise InvalidEvent("endpoint_name missing or not a string")
    if not isinstance(variant_name, str) or not variant_name:
        raise InvalidEvent("variant_name missing or not a string")
    kind = event.get("type")
    if kind == INVOCATION:
        reward_kind(endpoint_name, variant_name)
        latency_ms = event.get("latency_ms")
        if latency_ms is not None and not (_a_number(latency_ms) and latency_ms >= 0):
            raise InvalidEvent(f"latency_ms must be a number >= 0, got {latency_ms!r}")
        outcome = event.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise InvalidEvent(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        delta = invocation_delta(
            event.get("assignment"), event.get("propensity"), latency_ms=latency_ms, outcome=outcome
        )
        key = _key(event, endpoint_name, INVOCATION) if key_invocations and delta else None
        return EventDelta(endpoint_name, variant_name, delta, key)
    if kind == CONVERSION:
        reward = event.get("reward", 1.0)
        problem = reward_problem(reward, reward_kind(endpoint_name, variant_name))
        if problem:
            raise InvalidEvent(f"reward {problem}")
        assigned_at = event.get("assigned_at")
        if not _a_number(assigned_at):
            assigned_at = None  # logged before conversions carried their assignment
        late = event.get("late", False)
        if not isinstance(late, bool):
            raise InvalidEvent(f"late must be true or false, got {late!r}")
        key = _key(event, endpoint_name, CONVERSION)
        delta, first = conversion_deltas(
            float(reward),
            late=late,
            propensity=event.get("propensity"),
            first=assigned_at is not None and key is not None,
        )
        first_claim = None
        if first is not None:
            first_key = first_conversion_key(endpoint_name, event["user_id"], assigned_at)
            first_claim = (first_key, first)
        return EventDelta(endpoint_name, variant_name, delta, key, first_claim)
    raise InvalidEvent(f"unknown event type {kind!r}")


def first_conversion_key(endpoint_name: str, user_id: str, assigned_at: float) -> EventKey:
    """The claim of an assignment's first conversion: one per user and assignment."""
    return EventKey(endpoint_name, user_id, repr(float(assigned_at)), FIRST_CONVERSION)


def _a_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _key(event: dict, endpoint_name: str, event_type: str) -> EventKey | None:
    user_id, inference_id = event.get("user_id"), event.get("inference_id")
    if isinstance(user_id, str) and isinstance(inference_id, str):
        return EventKey(endpoint_name, user_id, inference_id, event_type)
    return None


# JSON values exactly as `encode` writes them. A line the regex below matches is valid
# JSON and a valid event, so aggregation can count such lines without parsing them.
_PLAIN = rb"[\x20\x21\x23-\x5b\x5d-\x7e]*"  # printable ASCII but quote and backslash
# A JSON string: plain runs joined by escapes ("unrolled", so the regex never backtracks).
_TEXT = rb'"' + _PLAIN + rb'(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})' + _PLAIN + rb')*"'
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"


def _value(field: Field, group: str | None) -> bytes:
    """The pattern of one field's JSON value; a named `group` captures what aggregation reads."""

    def capture(pattern: bytes) -> bytes:
        return (
            b"(?P<" + group.encode() + b">" + pattern + b")" if group else b"(?:" + pattern + b")"
        )

    match field.kind:
        case Kind.TIMESTAMP | Kind.TEXT:
            return capture(_TEXT)  # quotes and escapes included: `json_text` reads it
        case Kind.NAME:
            return b'"' + capture(rb"[A-Za-z0-9-]+") + b'"'
        case Kind.NUMBER:
            return capture(_NUMBER)
        case Kind.NULLABLE_NUMBER:
            return capture(_NUMBER + b"|null")
        case Kind.FLAG:
            return capture(b"true|false")
        case Kind.CHOICE:
            return b'"' + capture(b"|".join(re.escape(c.encode()) for c in field.choices)) + b'"'
        case Kind.CONTEXT:  # as the request body allows it (`CONTEXT_KEY`, MAX_CONTEXT_KEYS)
            item = b'"' + CONTEXT_KEY.encode() + b'":(?:' + _TEXT + b"|" + _NUMBER + b"|true|false)"
            most = str(MAX_CONTEXT_KEYS - 1).encode()
            return capture(rb"\{(?:" + item + b"(?:," + item + b"){0," + most + rb"})?\}")


class LineFormat:
    """The fast-path regex of some event types, and how to read its matches by field name.

    `regex.findall` gives each matched line as a tuple of every group in order: for each
    event type, a group named after it (non-empty only on its lines), then one named
    `<type>__<field>` per captured field (empty where an optional field is absent from
    the line). `captures` reads such a tuple back by name,
    so no caller counts positions. findall rather than finditer and `groupdict`: it
    builds no match object per line, and equal tuples (most invocations) collapse in
    a `Counter`; measured, finditer made the scan about a third slower.
    """

    def __init__(self, event_types: Iterable[EventType]) -> None:
        self.event_types = tuple(event_types)

    @cached_property
    def regex(self) -> re.Pattern[bytes]:
        # Compiled when aggregation first reads, not at import: the request path only writes
        # lines, and compiling this pattern is 3 ms of every API function's cold start.
        alternatives = []
        for event_type in self.event_types:
            name = event_type.name.encode()
            line = b'(?P<%s>%s)"' % (name, re.escape(name))
            for field in event_type.fields:
                group = f"{event_type.name}__{field.name}" if field.captured else None
                pattern = b',"' + re.escape(field.name.encode()) + b'":' + _value(field, group)
                line += b"(?:" + pattern + b")?" if field.optional else pattern
            alternatives.append(line)
        return re.compile(rb'^\{"type":"(?:' + b"|".join(alternatives) + rb")\}$", re.MULTILINE)

    @cached_property
    def _readers(self) -> tuple[tuple[str, int, tuple[tuple[str, int], ...]], ...]:
        """Per event type: its name, where its lines are told apart, its captured fields."""
        at = {name: number - 1 for name, number in self.regex.groupindex.items()}
        return tuple(
            (
                event_type.name,
                at[event_type.name],
                tuple(
                    (field.name, at[f"{event_type.name}__{field.name}"])
                    for field in event_type.fields
                    if field.captured
                ),
            )
            for event_type in self.event_types
        )

    def positions(self, event_type: str) -> tuple[int, dict[str, int]]:
        """Where a type's lines are told apart, and where each captured field is, in a tuple
        `regex.findall` gives: for loops over many distinct lines, where `captures`'s dict
        per line would cost more than the scan."""
        for name, at, fields in self._readers:
            if name == event_type:
                return at, dict(fields)
        raise ValueError(f"no event type {event_type!r} in this format")

    def captures(self, groups: tuple[bytes, ...]) -> tuple[str, dict[str, bytes]]:
        """(event type, {captured field: its bytes}) of one line `regex.findall` matched."""
        for name, at, fields in self._readers:
            if groups[at]:
                return name, {field: groups[i] for field, i in fields}
        raise ValueError("not a line of this format")


EVENT_LINE_FORMAT = LineFormat(EVENT_TYPES)


def json_text(raw: bytes) -> str:
    """A JSON string literal (quotes included) as text; escapes only cost a json.loads."""
    return json.loads(raw) if b"\\" in raw else raw[1:-1].decode()
