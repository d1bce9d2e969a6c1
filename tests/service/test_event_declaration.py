"""The event declarations generate the builders and the fast-path regex alike."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from datetime import UTC, datetime

import pytest

from abtest.aggregation import _Tally
from abtest.event_reading import (
    EVENT_LINE_FORMAT,
    LineFormat,
)
from abtest.events import (
    CONVERSION_EVENT,
    EVENT_TYPES,
    INVOCATION_EVENT,
    Field,
    Kind,
    conversion_event,
    encode,
    event_builder,
    invocation_event,
    invocation_line,
    iso_timestamp,
    line_writer,
)
from abtest.records import LATENCY_COUNTERS, AssignmentKind, Endpoint, VariantCounters

ENDPOINTS = {"reviews-dev": Endpoint("reviews-dev", "UCB1", 0.1, 0, (VariantCounters("A"),))}
COMMON = {
    "now": 1_795_000_000.5,
    "endpoint_name": "reviews-dev",
    "variant_name": "A",
    "user_id": "u",
    "inference_id": "i",
    "strategy": "ThompsonSampling",
}
# The assignment a conversion carries.
ASSIGNED = {"assigned_at": 1_794_999_000.25, "propensity": 0.5, "late": False}


def test_builders_write_type_first_then_the_declared_fields_in_order():
    invocation = invocation_event(
        **COMMON, propensity=None, assignment="new", latency_ms=3.5, outcome="ok", context={}
    )
    conversion = conversion_event(**COMMON, reward=0.5, **ASSIGNED)

    for event, declared in ((invocation, INVOCATION_EVENT), (conversion, CONVERSION_EVENT)):
        assert list(event) == ["type", *(field.name for field in declared.fields)]
        assert event["type"] == declared.name
        assert event["timestamp"] == "2026-11-18T11:06:40.500+00:00"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({**COMMON, "propensity": None}, "missing ['assignment']"),
        (
            {**COMMON, "propensity": None, "assignment": "new", "reward": 1.0},
            "unexpected ['reward']",
        ),
    ],
)
def test_a_builder_called_with_the_wrong_keywords_names_them(arguments, named):
    with pytest.raises(TypeError, match=rf"invocation_event\(\): .*{named}".replace("[", r"\[")):
        invocation_event(**arguments)


@pytest.mark.parametrize(
    "arguments",
    [
        {**COMMON, "propensity": None, "latency_ms": 1.0},  # an optional one, no assignment
        {**COMMON, "propensity": None, "assignment": "new", "outcome": None, "reward": 1.0},
        {**COMMON, "propensity": None, "assignment": "new", "latency_ms": 2.0, "queue_ms": 1},
    ],
)
def test_a_wrong_keyword_is_named_whatever_optional_fields_come_with_it(arguments):
    with pytest.raises(TypeError, match=r"invocation_event\(\): missing \[.*\], unexpected"):
        invocation_event(**arguments)


def test_an_optional_field_given_as_none_is_left_out_as_when_not_given():
    given = invocation_event(
        **COMMON, propensity=None, assignment="new", latency_ms=None, outcome=None
    )
    assert given == invocation_event(**COMMON, propensity=None, assignment="new")
    assert "latency_ms" not in given and "outcome" not in given


def test_the_timestamp_is_fromtimestamps_text_to_the_millisecond():
    """`iso_timestamp` keeps each second's text and works out the milliseconds itself: the
    same text as datetime's for any time, at the edges of a millisecond and of a second
    (a fraction that rounds up to a whole second), in the half-way cases and out of range."""
    rng = random.Random(7)
    times: list[float] = [0.0, 5e-324, 1e-7, 0.9999995, 1.0, 253_402_300_798.9999994]
    for _ in range(20_000):
        whole = rng.randrange(0, 4_000_000_000)
        times += [whole + rng.random(), whole + 0.9999995, whole + 0.99999949999, whole + 5e-7]
        times += [whole + 0.0005, whole + 0.9995, float(whole), math.nextafter(whole + 1.0, 0)]
        times.append(rng.uniform(0, 2.5e11))
    for now in times:
        expected = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        assert iso_timestamp(now) == expected, repr(now)
    assert iso_timestamp(1_795_000_000) == "2026-11-18T11:06:40.000+00:00"  # an int
    assert iso_timestamp(-0.5) == "1969-12-31T23:59:59.500+00:00"
    for out_of_range in (1e20, float("nan"), float("inf")):
        with pytest.raises((ValueError, OverflowError, OSError)):
            iso_timestamp(out_of_range)


def test_each_declared_choice_is_on_the_fast_path_and_nothing_else_is():
    (assignment,) = [f for f in INVOCATION_EVENT.fields if f.name == "assignment"]
    for choice in assignment.choices:
        line = encode(invocation_event(**COMMON, propensity=0.5, assignment=choice))
        assert _Tally(ENDPOINTS.get, [].append).fast(line, 1)
    line = encode(invocation_event(**COMMON, propensity=0.5, assignment="guessed"))
    assert not _Tally(ENDPOINTS.get, [].append).fast(line, 1)


def test_a_field_added_to_the_declaration_is_written_and_read_without_other_changes():
    """What adding an invocation `queue_ms` would take: one more Field, nothing else."""
    timed = dataclasses.replace(
        INVOCATION_EVENT,
        fields=(*INVOCATION_EVENT.fields, Field("queue_ms", Kind.NUMBER, captured=True)),
    )
    timed_format = LineFormat([timed, CONVERSION_EVENT])
    line = encode(
        event_builder(timed)(
            **COMMON, propensity=0.5, assignment="new", latency_ms=3, outcome="ok", queue_ms=12.5
        )
    )

    assert json.loads(line)["queue_ms"] == 12.5
    (groups,) = timed_format.regex.findall(line)
    assert timed_format.captures(groups) == (
        "invocation",
        {
            "endpoint_name": b"reviews-dev",
            "variant_name": b"A",
            "propensity": b"0.5",
            "assignment": b"new",
            "latency_ms": b"3",
            "outcome": b"ok",
            "queue_ms": b"12.5",
        },
    )
    tally = _Tally(ENDPOINTS.get, [].append)
    tally.line_format = timed_format
    assert tally.fast(line, 1)
    assert tally.counts["reviews-dev"]["A"].invocation_count == 1
    # The product's format has no such field: that line would take the json.loads path.
    assert not _Tally(ENDPOINTS.get, [].append).fast(line, 1)


def test_the_product_format_reads_back_each_declared_capture_by_name():
    assert EVENT_LINE_FORMAT.event_types == EVENT_TYPES
    conversion = encode(
        conversion_event(**{**COMMON, "user_id": 'Zoë "q"'}, reward=1e-7, **ASSIGNED)
    )

    (groups,) = EVENT_LINE_FORMAT.regex.findall(conversion)

    assert EVENT_LINE_FORMAT.captures(groups) == (
        "conversion",
        {
            "endpoint_name": b"reviews-dev",
            "variant_name": b"A",
            "user_id": rb'"Zo\u00eb \"q\""',
            "inference_id": b'"i"',
            "reward": b"1e-07",
            "assigned_at": b"1794999000.25",
            "propensity": b"0.5",
            "late": b"false",
        },
    )


@pytest.mark.parametrize("fast", [True, False])
def test_a_line_without_latency_and_outcome_counts_as_before_and_a_timed_one_adds_guardrails(fast):
    """Lines logged before calls carried their latency and outcome stay on the fast path and
    count as they did; a failed call counts as its assignment's trial and as an error."""
    old = encode(invocation_event(**COMMON, propensity=0.5, assignment="new"))
    failed = encode(
        invocation_event(
            **COMMON, propensity=0.5, assignment="new", latency_ms=120, outcome="error"
        )
    )
    manual = encode(
        invocation_event(
            **COMMON, propensity=1.0, assignment="manual", latency_ms=0.4, outcome="ok"
        )
    )
    tally = _Tally(ENDPOINTS.get, [].append)
    block = old + failed + manual
    if fast:
        assert tally.fast(block, 3)
    else:
        tally.slow(block, 1)
    counts = tally.counts["reviews-dev"]["A"]

    assert (counts.users, counts.invocation_count, counts.weight_sum) == (2, 2, 4.0)
    assert counts.model_errors == 1
    assert (counts.latency_le_200ms, counts.latency_le_1ms) == (1, 1)
    assert sum(getattr(counts, name) for name in LATENCY_COUNTERS) == 2


@pytest.mark.parametrize(
    ("field", "value"), [("latency_ms", -1), ("latency_ms", "fast"), ("outcome", "maybe")]
)
def test_a_bad_latency_or_outcome_is_rejected_with_its_reason(field, value):
    line = json.loads(
        encode(
            invocation_event(**COMMON, propensity=0.5, assignment="new", latency_ms=1, outcome="ok")
        )
    )
    line[field] = value
    rejected = []
    tally = _Tally(ENDPOINTS.get, rejected.append)

    assert not tally.fast(encode(line), 1)
    tally.slow(encode(line), 1)

    assert tally.rejected == 1 and field in rejected[0].reason


# Values of every form a field could be given: the plain ones and everything else.
TEXTS = ["u", "", 'q"uo\\te', "tab\tnew\nline\x00", "naïve ☃", "\ud800 lone", "r" * 300]
NUMBERS = [0.0, -0.0, 0.5, 1e-300, 1.7976931348623157e308, 3.0, float("nan"), float("inf")]
OTHERS = [None, True, False, 0, 7, 2**70, "0.5", [1], {"a": 1}]
# Contexts as a request gives them, and what no request can (keys that are no names,
# nested values, numbers JSON has no word for).
CONTEXTS = [
    {"country": "fr", "age": 31, "vip": True, "score": 0.25},
    {},
    {"k": 'q"é\u2603', "n": -0.0, "big": 2**70},
    {str(n): n for n in range(17)},
    {1: "one", "nested": {"a": [1, None]}},
    {"x": float("inf")},
    {"x": float("nan")},
]


def random_value(field: Field, rng: random.Random):
    if rng.random() < 0.15:
        return rng.choice(OTHERS + TEXTS + NUMBERS)
    match field.kind:
        case Kind.TIMESTAMP:
            return rng.choice([rng.uniform(0, 4e9), 1_795_000_000.9995, 0.0, 5, -1.5])
        case Kind.NAME | Kind.TEXT:
            return rng.choice(TEXTS)
        case Kind.CHOICE:
            return rng.choice([*field.choices, *AssignmentKind, "guessed"])
        case Kind.NUMBER | Kind.NULLABLE_NUMBER:
            return rng.choice([*NUMBERS, rng.uniform(-1e6, 1e6), None])
        case Kind.FLAG:
            return rng.choice([True, False, None, 1])
        case Kind.CONTEXT:
            return rng.choice(CONTEXTS)


def outcome(call, values):
    try:
        return call(**values)
    except Exception as error:  # what is refused is refused alike
        return type(error), str(error)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_a_line_writer_writes_its_events_encoding_byte_for_byte(event_type):
    """The line written straight from the fields is `encode` of the builder's dict, for
    values of every form; what `encode` refuses (a list in a text field...) is refused alike."""
    rng = random.Random(14)
    build, write = event_builder(event_type), line_writer(event_type)
    for _ in range(20_000):
        values = {field.argument: random_value(field, rng) for field in event_type.fields}
        for field in event_type.fields:
            if field.optional and rng.random() < 0.3:
                del values[field.argument]
        assert outcome(write, values) == outcome(lambda **v: encode(build(**v)), values)


def test_the_invocation_line_is_the_products_and_reads_back_on_the_fast_path():
    values = {**COMMON, "propensity": 0.5, "assignment": AssignmentKind.NEW}
    line = invocation_line(**values, latency_ms=0.1, outcome="ok")
    assert line == encode(invocation_event(**values, latency_ms=0.1, outcome="ok"))
    tally = _Tally(ENDPOINTS.get, [].append)
    assert tally.fast(line, 1)
    assert tally.counts["reviews-dev"]["A"].users == 1


def test_a_request_context_is_written_last_and_its_line_stays_on_the_fast_path():
    values = {**COMMON, "propensity": 0.5, "assignment": "new", "outcome": "ok"}
    for context in CONTEXTS:
        line = invocation_line(**values, context=context)
        assert line == encode({**invocation_event(**values), "context": context})
        tally = _Tally(ENDPOINTS.get, [].append)
        # What a request may carry is counted without json.loads; anything else still
        # counts, the slow way.
        assert tally.fast(line, 1) == a_request_could_send(context), context
        if not a_request_could_send(context):
            tally.slow(line, 1)
        assert tally.events == 1 and tally.rejected == 0
        assert tally.counts["reviews-dev"]["A"].users == 1


def a_request_could_send(context: dict) -> bool:
    """At most 16 names to strings, or to numbers JSON can write."""
    return len(context) <= 16 and all(
        isinstance(key, str)
        and (isinstance(value, str) or (isinstance(value, int | float) and math.isfinite(value)))
        for key, value in context.items()
    )


def test_a_field_added_to_the_declaration_is_written_by_the_line_writer_too():
    timed = dataclasses.replace(
        INVOCATION_EVENT,
        fields=(*INVOCATION_EVENT.fields, Field("queue_ms", Kind.NUMBER, optional=True)),
    )
    values = {**COMMON, "propensity": 0.5, "assignment": "new", "queue_ms": 12.5}
    line = line_writer(timed)(**values)
    assert line == encode(event_builder(timed)(**values))
    assert json.loads(line)["queue_ms"] == 12.5
