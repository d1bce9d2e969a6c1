"""The event log's line format: what the request path writes and aggregation reads back.

One JSON object per line. Every event carries its own timestamp, taken from the
clock when it happened (never frozen at import or cold start).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from abtest.records import AssignmentKind, ConversionKey, VariantCounts

INVOCATION = "invocation"
CONVERSION = "conversion"
# Invocations the bandit did not choose: logged, but not counted in the variant's
# counters, because their users cannot convert (fallback) or were not sampled (manual).
UNCOUNTED_ASSIGNMENTS = frozenset({AssignmentKind.MANUAL, AssignmentKind.FALLBACK})


def encode(event: Mapping[str, Any]) -> bytes:
    """One compact JSON line: the exact shape `EVENT_LINE` recognises."""
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


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
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")


def invocation_event(
    *,
    now: float,
    endpoint_name: str,
    variant_name: str,
    user_id: str,
    inference_id: str,
    strategy: str,
    propensity: float | None,
    assignment: str,
) -> dict[str, Any]:
    return {
        "type": INVOCATION,
        "timestamp": iso_timestamp(now),
        "endpoint_name": endpoint_name,
        "variant_name": variant_name,
        "user_id": user_id,
        "inference_id": inference_id,
        "strategy": strategy,
        "propensity": propensity,
        "assignment": assignment,
    }


def conversion_event(
    *,
    now: float,
    endpoint_name: str,
    variant_name: str,
    user_id: str,
    inference_id: str,
    strategy: str,
    reward: float,
) -> dict[str, Any]:
    return {
        "type": CONVERSION,
        "timestamp": iso_timestamp(now),
        "endpoint_name": endpoint_name,
        "variant_name": variant_name,
        "user_id": user_id,
        "inference_id": inference_id,
        "strategy": strategy,
        "reward": reward,
    }


def valid_reward(reward: float) -> bool:
    return not math.isnan(reward) and 0.0 <= reward <= 1.0


class DamagedObject(Exception):
    """An event object whose own bytes end mid-stream (a truncated gzip).

    Raised by an archive's `read_blocks` after the blocks it could read: those are whole
    lines and count; what follows the damage cannot be read by anyone, ever.
    """


class InvalidEvent(ValueError):
    """A delivered line that is not an event aggregation can count; the message is the reason."""


def event_delta(event: Any) -> tuple[str, str, VariantCounts | None, ConversionKey | None]:
    """(endpoint, variant, delta, key) for one parsed line.

    delta is None for a logged-only invocation; key names a conversion that carries its
    user_id and inference_id, so that it is counted once however often it was logged.
    """
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
        if event.get("assignment") in UNCOUNTED_ASSIGNMENTS:
            return endpoint_name, variant_name, None, None
        return endpoint_name, variant_name, VariantCounts(invocation_count=1), None
    if kind == CONVERSION:
        reward = event.get("reward", 1.0)
        if (
            isinstance(reward, bool)
            or not isinstance(reward, int | float)
            or not valid_reward(reward)
        ):
            raise InvalidEvent(f"reward must be a number in [0, 1], got {reward!r}")
        user_id, inference_id = event.get("user_id"), event.get("inference_id")
        key = (
            ConversionKey(endpoint_name, user_id, inference_id)
            if isinstance(user_id, str) and isinstance(inference_id, str)
            else None
        )
        delta = VariantCounts(conversion_count=1, reward_sum=reward)
        return endpoint_name, variant_name, delta, key
    raise InvalidEvent(f"unknown event type {kind!r}")


# A whole line as `encode` writes the two events above: every line it matches is valid
# JSON and a valid event, so aggregation can count such lines without parsing them
# (`re.findall` and `Counter` both run in C). Any other line, say one with another key
# order or raw non-ASCII bytes, takes the json.loads path.
_PLAIN = rb"[\x20\x21\x23-\x5b\x5d-\x7e]*"  # printable ASCII but quote and backslash
# A JSON string: plain runs joined by escapes ("unrolled", so the regex never backtracks).
_TEXT = rb'"' + _PLAIN + rb'(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})' + _PLAIN + rb')*"'
_NAME = rb'"([A-Za-z0-9-]+)"'
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"


def _common(ids: bytes) -> bytes:
    """The fields both events share; `ids` is the pattern of user_id and inference_id."""
    return (
        rb',"timestamp":'
        + _TEXT
        + rb',"endpoint_name":'
        + _NAME
        + rb',"variant_name":'
        + _NAME
        + ids
        + rb',"strategy":'
        + _TEXT
    )


# Conversions capture their ids (JSON text, quotes included): aggregation counts each once.
EVENT_LINE = re.compile(
    rb'^\{"type":"(?:(invocation)"'
    + _common(rb',"user_id":' + _TEXT + rb',"inference_id":' + _TEXT)
    + rb',"propensity":(?:'
    + _NUMBER
    + rb"|null)"
    + rb',"assignment":"(new|existing|manual|fallback)"'
    + rb'|(conversion)"'
    + _common(rb',"user_id":(' + _TEXT + rb'),"inference_id":(' + _TEXT + rb")")
    + rb',"reward":('
    + _NUMBER
    + rb"))\}$",
    re.MULTILINE,
)


def json_text(raw: bytes) -> str:
    """A JSON string literal (quotes included) as text; escapes only cost a json.loads."""
    return json.loads(raw) if b"\\" in raw else raw[1:-1].decode()
