"""`events.encode` writes exactly the bytes json.dumps(separators=(",", ":")) wrote.

The encoder is made once instead of per line (its cost halved); aggregation's fast path
and every line already in the logs were written with json.dumps's bytes, so any
difference, on any value an event can hold, would be a different line format.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from abtest.events import ASSIGNMENT_KINDS, OUTCOMES, conversion_event, encode, invocation_event

# Strings an id may hold: ASCII, quotes, backslashes, control characters, non-ASCII,
# astral characters (a surrogate pair), lone surrogates.
ALPHABET = 'aZ09-_ "\\/\t\n\x00\x07\x1f\x7fé用\U0001f600\ud800</>'


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 40)))


def _number(rng: random.Random) -> float | int:
    return rng.choice(
        [
            rng.random(),
            rng.uniform(-1e300, 1e300),
            rng.randrange(-(10**30), 10**30),
            0.0,
            -0.0,
            1e-320,  # subnormal
            0.1 + 0.2,
            rng.randrange(100),
        ]
    )


def _context(rng: random.Random) -> dict:
    return {_text(rng): rng.choice([_text(rng), _number(rng), True, False]) for _ in range(3)}


def _events(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        event = invocation_event(
            now=rng.uniform(0, 4e9),
            endpoint_name=_text(rng),
            variant_name=_text(rng),
            user_id=_text(rng),
            inference_id=f"{rng.getrandbits(128):032x}",
            strategy=_text(rng),
            propensity=rng.choice([None, _number(rng)]),
            assignment=rng.choice(ASSIGNMENT_KINDS),
            latency_ms=rng.choice([None, round(rng.uniform(0, 1e4), 1)]),
            outcome=rng.choice([None, *OUTCOMES]),
        )
        if rng.random() < 0.3:
            event["context"] = _context(rng)
        events.append(event)
        events.append(
            conversion_event(
                now=rng.uniform(0, 4e9),
                endpoint_name=_text(rng),
                variant_name=_text(rng),
                user_id=_text(rng),
                inference_id=_text(rng),
                strategy=_text(rng),
                reward=_number(rng),
                assigned_at=rng.uniform(0, 4e9),
                propensity=rng.choice([None, _number(rng)]),
                late=rng.random() < 0.5,
            )
        )
    return events


def _dumps(event: object) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def test_random_events_encode_to_json_dumps_bytes() -> None:
    for event in _events(seed=14, count=5000):
        assert encode(event) == _dumps(event)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**70, True, None, [1, "x"]])
def test_unusual_values_encode_as_json_dumps_does(value: object) -> None:
    event = {"type": "invocation", "value": value, "nested": {"v": value}}
    assert encode(event) == _dumps(event)


def test_what_json_dumps_refuses_is_refused_alike() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode({"type": "invocation", "value": object()})
    with pytest.raises(TypeError, match="not JSON serializable"):
        _dumps({"type": "invocation", "value": object()})
