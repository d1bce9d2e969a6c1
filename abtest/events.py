"""The event log's line format: what the request path writes and aggregation reads back.

One JSON object per line. Every event carries its own timestamp, taken from the
clock when it happened (never frozen at import or cold start).

Each event type's fields are declared once (`INVOCATION_EVENT`, `CONVERSION_EVENT`):
the builders the request path calls and the regex aggregation counts with are both
generated from that declaration, so a field added there is written and recognised alike.
"""

from __future__ import annotations

import inspect
import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cached_property
from itertools import repeat
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any, NamedTuple, NoReturn

from abtest.config_types import BINARY
from abtest.records import AssignmentKind, EventKey, VariantCounts, latency_counter

INVOCATION = "invocation"
CONVERSION = "conversion"
# Not a logged type: the claim an assignment's first counted conversion makes, keyed by the
# assignment (its user and `assigned_at`), so the user converts once however often logged.
FIRST_CONVERSION = "first-conversion"
# The event log's folders in a bucket: delivered events under EVENTS_PREFIX (on AWS the
# only prefix that notifies aggregation, so nothing it writes loops back), the lines
# aggregation rejects under REJECTED_PREFIX.
EVENTS_PREFIX = "events/"
REJECTED_PREFIX = "rejected/"
ASSIGNMENT_KINDS = tuple(kind.value for kind in AssignmentKind)
# Invocations the bandit did not choose: logged, but not counted in the variant's
# counters, because their users cannot convert (fallback) or were not sampled (manual).
UNCOUNTED_ASSIGNMENTS = frozenset({AssignmentKind.MANUAL, AssignmentKind.FALLBACK})
# An invocation's optional request context (flat: names to strings, numbers, booleans),
# the last field of its line, written only when the request carried one. Off-policy
# evaluation fits its reward model on it and segments by it; the payload is never logged.
CONTEXT_FIELD = "context"
# Its limits, so that a line stays small and its keys are safe names for any reader.
MAX_CONTEXT_KEYS = 16
CONTEXT_KEY = r"[A-Za-z0-9_-]{1,64}"  # a whole key (re.fullmatch)
MAX_CONTEXT_TEXT_LENGTH = 256
# How an invocation's model call ended: "error" is a call that raised (the request was
# answered 502, no prediction served). Lines logged before calls carried their outcome
# and latency have neither, and count as they always did, without guardrail counts.
OK, ERROR = "ok", "error"
OUTCOMES = (OK, ERROR)


def _compact_encoder() -> Callable[[Any, int], Any] | None:
    """`json.dumps(value, separators=(",", ":"))`'s C encoder, made once: json.dumps makes a
    new one on every call, which cost about half of an event line. The same settings, so
    the same bytes; only the check for circular containers is off (an event is built here,
    never circular). None where the interpreter has no C encoder."""
    if c_make_encoder is None:
        return None
    default = json.JSONEncoder().default  # the TypeError json.dumps raises
    # markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan
    return c_make_encoder(
        None, default, encode_basestring_ascii, None, ":", ",", False, False, True
    )


_COMPACT = _compact_encoder()


def _compact_text(value: Any) -> str:
    """One JSON value as `encode` writes it inside a line (needs `_COMPACT`)."""
    return "".join(_COMPACT(value, 0))  # type: ignore[misc]


def encode(event: Mapping[str, Any]) -> bytes:
    """One compact JSON line: the exact shape `EVENT_LINE_FORMAT` recognises."""
    if _COMPACT is None or type(event) is not dict:
        return json.dumps(event, separators=(",", ":")).encode() + b"\n"
    return "".join(_COMPACT(event, 0)).encode() + b"\n"


def whole_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut byte chunks at line ends: blocks of whole lines, never a line split in two."""
    partial = b""
    for chunk in chunks:
        cut = chunk.rfind(b"\n")
        if cut < 0:
            partial += chunk
            continue
        yield partial + chunk[: cut + 1]
        partial = chunk[cut + 1 :]
    if partial:
        yield partial


def split_lines(block: bytes) -> list[bytes]:
    """The lines of a block, without their line ends (a final newline ends, not adds, one)."""
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def iso_timestamp(epoch_seconds: float) -> str:
    """`datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")`.

    Every event has one, so the text up to the second is kept for the second being logged
    and the milliseconds are worked out as fromtimestamp does: the fraction rounded half to
    even to microseconds (a fraction that rounds up to 1e6 is the next second), then cut to
    milliseconds. Anything unusual (before 1970, not a finite float) takes the full way."""
    global _iso_second
    if type(epoch_seconds) is float and 0.0 <= epoch_seconds < _ISO_LAST:
        fraction, whole = math.modf(epoch_seconds)
        micro = round(fraction * 1e6)
        if micro >= 1_000_000:
            micro -= 1_000_000
            whole += 1.0
        second, prefix = _iso_second
        if whole != second:
            prefix = datetime.fromtimestamp(whole, UTC).isoformat(timespec="seconds")[:-6]
            _iso_second = (whole, prefix)
        return f"{prefix}.{micro // 1000:03d}+00:00"
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")


# The second `iso_timestamp` last wrote (epoch seconds) and its text ("2026-12-07T05:59:01").
_iso_second: tuple[float, str] = (-1.0, "")
# Timestamps from here on (year 9999) take the full way, which raises what it raised.
_ISO_LAST = 253_402_300_799.0


class Kind(Enum):
    """How a field's value is written (its fast-path pattern is in `_value`)."""

    TIMESTAMP = "ISO 8601 text, built from the builder's `now` (epoch seconds)"
    NAME = "an endpoint or variant name: ASCII letters, digits and hyphens"
    TEXT = "any string"
    NUMBER = "a finite number"
    NULLABLE_NUMBER = "a finite number or null"
    FLAG = "true or false"
    CHOICE = "one of the field's `choices`"
    CONTEXT = "a flat object of names to strings, numbers or booleans"


_ARGUMENT_TYPES = {
    Kind.TIMESTAMP: float,
    Kind.NAME: str,
    Kind.TEXT: str,
    Kind.NUMBER: float,
    Kind.NULLABLE_NUMBER: float | None,
    Kind.FLAG: bool,
    Kind.CHOICE: str,
    Kind.CONTEXT: dict[str, str | float | bool],
}


@dataclass(frozen=True)
class Field:
    """One field of an event line; `captured` fields are read back by the fast path."""

    name: str
    kind: Kind
    captured: bool = False
    choices: tuple[str, ...] = ()
    # Absent from some lines: those logged before the field existed, or (the context) those
    # of requests without one. The builders leave it out when None, and the fast path
    # matches lines with and without it (declare such fields last).
    optional: bool = False

    @property
    def argument(self) -> str:
        """The builder's keyword: the timestamp is built from `now`, every other field is itself."""
        return "now" if self.kind is Kind.TIMESTAMP else self.name


@dataclass(frozen=True)
class EventType:
    """An event line: `"type"` first, then `fields` in this order (as `encode` writes them)."""

    name: str
    fields: tuple[Field, ...]


INVOCATION_EVENT = EventType(
    INVOCATION,
    (
        Field("timestamp", Kind.TIMESTAMP),
        Field("endpoint_name", Kind.NAME, captured=True),
        Field("variant_name", Kind.NAME, captured=True),
        Field("user_id", Kind.TEXT),
        Field("inference_id", Kind.TEXT),
        Field("strategy", Kind.TEXT),
        # Captured: a new assignment's weight in the propensity-weighted sums is 1/propensity.
        Field("propensity", Kind.NULLABLE_NUMBER, captured=True),
        # Captured: manual and fallback invocations are logged but not counted.
        Field("assignment", Kind.CHOICE, captured=True, choices=ASSIGNMENT_KINDS),
        # Captured: the model call's duration (milliseconds) and outcome, the guardrails'.
        Field("latency_ms", Kind.NUMBER, captured=True, optional=True),
        Field("outcome", Kind.CHOICE, captured=True, choices=OUTCOMES, optional=True),
        # Not captured: aggregation counts no context, but its lines keep the fast path.
        Field(CONTEXT_FIELD, Kind.CONTEXT, optional=True),
    ),
)
CONVERSION_EVENT = EventType(
    CONVERSION,
    (
        Field("timestamp", Kind.TIMESTAMP),
        Field("endpoint_name", Kind.NAME, captured=True),
        Field("variant_name", Kind.NAME, captured=True),
        # Captured: the ids key the conversion, so that it is counted once.
        Field("user_id", Kind.TEXT, captured=True),
        Field("inference_id", Kind.TEXT, captured=True),
        Field("strategy", Kind.TEXT),
        Field("reward", Kind.NUMBER, captured=True),
        # The user's assignment, from the store: when it was made (epoch seconds, which keys
        # the user's first conversion) and the propensity logged with it (its weight).
        Field("assigned_at", Kind.NUMBER, captured=True),
        Field("propensity", Kind.NULLABLE_NUMBER, captured=True),
        # Later than the endpoint's attribution window after the assignment: not counted.
        Field("late", Kind.FLAG, captured=True),
    ),
)
EVENT_TYPES = (INVOCATION_EVENT, CONVERSION_EVENT)


def event_builder(event_type: EventType) -> Callable[..., dict[str, Any]]:
    """The keyword-only function that builds one event of `event_type`, fields in declared
    order. An optional field left out is not written (a line of the shape logged before it
    existed, which the request path never writes)."""
    fields = event_type.fields
    arguments = {field.argument for field in fields}
    required = {field.argument for field in fields if not field.optional}
    # Worked out once, not per event: (name, keyword, is the timestamp, optional).
    layout = tuple(
        (field.name, field.argument, field.kind is Kind.TIMESTAMP, field.optional)
        for field in fields
    )

    def wrong(values: dict[str, Any]) -> NoReturn:
        missing, unexpected = required - values.keys(), values.keys() - arguments
        raise TypeError(
            f"{build.__name__}(): missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )

    # The builder is written out as source, once: a dict display of the fields in order
    # costs a third of a loop over the layout, and every request builds an event. Fields
    # after the first optional one are set one by one, in their declared order.
    def written(argument: str, timestamp: bool) -> str:
        return f"iso_timestamp(values[{argument!r}])" if timestamp else f"values[{argument!r}]"

    leading = [f"{'type'!r}: {event_type.name!r}"]
    rest: list[str] = []
    for name, argument, timestamp, optional in layout:
        if optional:
            rest += [
                f"        value = values.get({argument!r})",
                "        if value is not None:",
                f"            event[{name!r}] = value",
            ]
        elif rest:
            rest.append(f"        event[{name!r}] = {written(argument, timestamp)}")
        else:
            leading.append(f"{name!r}: {written(argument, timestamp)}")
    optionals = [argument for _, argument, _, optional in layout if optional]
    counted = " + ".join([str(len(required)), *(f"({a!r} in values)" for a in optionals)])
    source = [
        "def build(**values):",
        "    try:",
        f"        event = {{{', '.join(leading)}}}",
        *rest,
        "    except KeyError:",
        "        wrong(values)",
        f"    if len(values) != {counted}:",
        "        wrong(values)",
        "    return event",
    ]
    namespace: dict[str, Any] = {"iso_timestamp": iso_timestamp, "wrong": wrong}
    exec("\n".join(source), namespace)  # names and literals from the declaration only
    build = namespace["build"]

    build.__name__ = build.__qualname__ = f"{event_type.name}_event"
    build.__doc__ = (
        f"One {event_type.name} event, as declared in `{event_type.name.upper()}_EVENT`."
    )
    build.__signature__ = inspect.Signature(
        [
            inspect.Parameter(
                field.argument,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_ARGUMENT_TYPES[field.kind],
                **({"default": None} if field.optional else {}),
            )
            for field in fields
        ],
        return_annotation=dict[str, Any],
    )
    return build


invocation_event = event_builder(INVOCATION_EVENT)
conversion_event = event_builder(CONVERSION_EVENT)


def _json_of(field: Field) -> tuple[str, str]:
    """(the test that a field's value has the plain form, the f-string text writing it then),
    as `encode` writes it: a str through the same escaping, a finite float by its repr."""
    value = field.argument
    finite = f"type({value}) is float and {value} - {value} == 0.0"  # no NaN, no infinity
    match field.kind:
        case Kind.TIMESTAMP:  # digits and separators only, whatever the value
            return "True", f'"{{iso_timestamp({value})}}"'
        case Kind.NAME | Kind.TEXT:
            return f"type({value}) is str", f"{{escaped({value})}}"
        case Kind.CHOICE:
            return (
                f"isinstance({value}, str) and {value} in {set(field.choices)!r}",
                f"{{escaped({value})}}",
            )
        case Kind.NUMBER:
            return finite, f"{{repr({value})}}"
        case Kind.NULLABLE_NUMBER:
            nullable = f"{{NULL if {value} is None else repr({value})}}"
            return f"({value} is None or {finite})", nullable
        case Kind.FLAG:
            return f"({value} is True or {value} is False)", f"{{TRUE if {value} else FALSE}}"
        case Kind.CONTEXT:  # `encode`'s own encoder, on the object alone
            return f"(type({value}) is dict and COMPACT is not None)", f"{{compact({value})}}"


def line_writer(event_type: EventType) -> Callable[..., bytes]:
    """The function writing one event of `event_type` straight to its line, bytes for bytes
    `encode(builder(**values))` (`event_builder`) without the dict: 4.5 -> 2.1 us an
    invocation, measured. Values of any other form (an int for a float, a non-finite
    number, a choice not declared) take the builder and `encode`, which write or refuse
    them as ever."""
    build = event_builder(event_type)
    # The f-string's expressions name their constants: they may hold no quotes (3.11).
    namespace: dict[str, Any] = {
        "iso_timestamp": iso_timestamp,
        "escaped": encode_basestring_ascii,
        "encode": encode,
        "compact": _compact_text,
        "COMPACT": _COMPACT,
        "build": build,
        "NULL": "null",
        "TRUE": "true",
        "FALSE": "false",
        "EMPTY": "",
    }
    tests, pieces, arguments = [], [], []
    for field in event_type.fields:
        test, text = _json_of(field)
        name = field.argument
        if field.optional:  # written after its key, or not at all
            arguments.append(f"{name}=None")
            tests.append(f"({name} is None or {test})")
            namespace[f"KEY_{name}"] = f',"{field.name}":'
            value = text[1:-1]  # the expression inside the braces
            pieces.append(f"{{EMPTY if {name} is None else KEY_{name} + {value}}}")
        else:
            arguments.append(name)
            tests.append(test)
            pieces.append(f',"{field.name}":{text}')
    names = [field.argument for field in event_type.fields]
    line = f'{{{{"type":"{event_type.name}"' + "".join(pieces) + "}}\n"
    source = [
        f"def write(*, {', '.join(arguments)}):",
        f"    if {' and '.join(tests)}:",
        f"        return f{line!r}.encode()",
        f"    return encode(build({', '.join(f'{n}={n}' for n in names)}))",
    ]
    exec("\n".join(source), namespace)  # names and literals from the declaration only
    write = namespace["write"]
    write.__name__ = write.__qualname__ = f"{event_type.name}_line"
    write.__doc__ = f"One {event_type.name} event's line, as `encode` writes its dict."
    return write


invocation_line = line_writer(INVOCATION_EVENT)


# Beyond any revenue or duration in any unit (a larger one is a unit mistake), and small
# enough that its square, weighted by 1/p^2 for the smallest propensity a strategy logs,
# summed over billions of conversions, stays a finite float.
MAX_CONTINUOUS_REWARD = 1e15


def reward_problem(reward: Any, kind: str) -> str | None:
    """Why `reward` cannot be a reward of `kind` (an `ExperimentSettings.reward`), or None.
    The request path and aggregation ask the same question."""
    if isinstance(reward, bool) or not isinstance(reward, int | float):
        return f"must be a number, got {reward!r}"
    if not math.isfinite(reward):
        return f"must be a finite number, got {reward!r}"
    if kind == BINARY and not 0.0 <= reward <= 1.0:
        return f"must be in [0, 1] for a binary reward, got {reward!r}"
    if abs(reward) > MAX_CONTINUOUS_REWARD:
        return f"must be within +-{MAX_CONTINUOUS_REWARD:g}, got {reward!r}"
    return None


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


class DamagedObject(Exception):
    """An event object whose own bytes end mid-stream (a truncated gzip).

    Raised by an archive's `read_blocks` after the blocks it could read: those are whole
    lines and count; what follows the damage cannot be read by anyone, ever.
    """


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
