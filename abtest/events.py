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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any, NoReturn

from abtest.config_types import BINARY
from abtest.records import AssignmentKind

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


class DamagedObject(Exception):
    """An event object whose own bytes end mid-stream (a truncated gzip).

    Raised by an archive's `read_blocks` after the blocks it could read: those are whole
    lines and count; what follows the damage cannot be read by anyone, ever.
    """
