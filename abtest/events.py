"""The event log's line format: what the request path writes and aggregation reads back.

One JSON object per line. Every event carries its own timestamp, taken from the
clock when it happened (never frozen at import or cold start).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from abtest.records import VariantCounts

INVOCATION = "invocation"
CONVERSION = "conversion"
# Invocations the bandit did not choose: logged, but not counted in the variant's
# counters, because their users cannot convert (fallback) or were not sampled (manual).
UNCOUNTED_ASSIGNMENTS = frozenset({"manual", "fallback"})


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


class InvalidEvent(ValueError):
    """A delivered line that is not an event aggregation can count; the message is the reason."""


def event_delta(event: Any) -> tuple[str, str, VariantCounts | None]:
    """(endpoint, variant, delta) for one parsed line; delta None for a logged-only invocation."""
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
            return endpoint_name, variant_name, None
        return endpoint_name, variant_name, VariantCounts(invocation_count=1)
    if kind == CONVERSION:
        reward = event.get("reward", 1.0)
        if (
            isinstance(reward, bool)
            or not isinstance(reward, int | float)
            or math.isnan(reward)
            or not 0.0 <= reward <= 1.0
        ):
            raise InvalidEvent(f"reward must be a number in [0, 1], got {reward!r}")
        return endpoint_name, variant_name, VariantCounts(conversion_count=1, reward_sum=reward)
    raise InvalidEvent(f"unknown event type {kind!r}")
