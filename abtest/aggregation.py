"""Turn one delivered event object into counter deltas, and apply them once.

The object is streamed in blocks of whole lines. A block whose every line has the
exact shape the request path writes (`events.EVENT_LINE`) is counted without
parsing JSON: one regex scan and a `Counter`, both in C. Any other block is parsed
with `json.loads` line by line, so a malformed line is rejected alone, with its
number (line numbers count every line of the object, blank ones included).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable

from abtest.events import (
    EVENT_LINE,
    UNCOUNTED_ASSIGNMENTS,
    InvalidEvent,
    event_delta,
    split_lines,
    valid_reward,
)
from abtest.ports import EventArchive, Store
from abtest.records import (
    AggregationResult,
    CountsByEndpoint,
    Endpoint,
    RejectedLine,
    VariantCounts,
)

logger = logging.getLogger("abtest")

MAX_KEPT_LINE_CHARS = 10_000


class _Tally:
    """Deltas, rejected lines and the variants each endpoint has (looked up once)."""

    def __init__(self, endpoint: Callable[[str], Endpoint | None]) -> None:
        self.endpoint = endpoint
        self.counts: CountsByEndpoint = {}
        self.rejected: list[RejectedLine] = []
        self.events = 0
        self._variants: dict[str, frozenset[str] | None] = {}

    def known(self, endpoint_name: str, variant_name: str) -> str | None:
        """None if the variant can take counts, else why not."""
        if endpoint_name not in self._variants:
            record = self.endpoint(endpoint_name)
            self._variants[endpoint_name] = frozenset(record.variant_names) if record else None
        variants = self._variants[endpoint_name]
        if variants is None:
            return f"unknown endpoint {endpoint_name!r}"
        if variant_name not in variants:
            return f"unknown variant {variant_name!r} on {endpoint_name!r}"
        return None

    def add(self, endpoint_name: str, variant_name: str, delta: VariantCounts | None) -> None:
        if delta is not None:
            variants = self.counts.setdefault(endpoint_name, {})
            variants.setdefault(variant_name, VariantCounts()).add(delta)

    def fast(self, block: bytes, line_count: int) -> bool:
        """Count a block of well-shaped lines; False (nothing counted) if any line is not."""
        lines = EVENT_LINE.findall(block)
        if len(lines) != line_count:
            return False
        deltas = []
        for key, n in Counter(lines).items():
            invocation, endpoint_a, variant_a, assignment, _, endpoint_b, variant_b, reward = key
            endpoint_name = (endpoint_a or endpoint_b).decode()
            variant_name = (variant_a or variant_b).decode()
            if invocation:
                counted = assignment.decode() not in UNCOUNTED_ASSIGNMENTS
                delta = VariantCounts(invocation_count=n) if counted else None
            else:
                value = float(reward)
                if not valid_reward(value):
                    return False
                delta = VariantCounts(conversion_count=n, reward_sum=value * n)
            if self.known(endpoint_name, variant_name):
                return False
            deltas.append((endpoint_name, variant_name, delta))
        for delta in deltas:
            self.add(*delta)
        self.events += line_count
        return True

    def slow(self, block: bytes, first_line_number: int) -> None:
        for n, line in enumerate(split_lines(block), first_line_number):
            if not line.strip():
                continue
            try:
                try:
                    value = json.loads(line)
                except ValueError as error:
                    raise InvalidEvent(f"not JSON: {error}") from None
                endpoint_name, variant_name, delta = event_delta(value)
                reason = self.known(endpoint_name, variant_name)
                if reason:
                    raise InvalidEvent(reason)
            except InvalidEvent as invalid:
                text = line.decode("utf-8", "replace")[:MAX_KEPT_LINE_CHARS]
                self.rejected.append(RejectedLine(n, str(invalid), text))
                continue
            self.events += 1
            self.add(endpoint_name, variant_name, delta)


def count_events(
    blocks: Iterable[bytes], endpoint: Callable[[str], Endpoint | None]
) -> tuple[CountsByEndpoint, int, list[RejectedLine]]:
    """Group deltas by endpoint and variant; reject what no registered variant can take."""
    tally = _Tally(endpoint)
    read = 0
    for block in blocks:
        line_count = block.count(b"\n") + (not block.endswith(b"\n"))
        if not tally.fast(block, line_count):
            tally.slow(block, read + 1)
        read += line_count
    return tally.counts, tally.events, tally.rejected


def aggregate(
    store: Store, archive: EventArchive, object_key: str, now: float
) -> AggregationResult:
    counts, events, rejected = count_events(archive.read_blocks(object_key), store.get_endpoint)
    applied = store.apply_counts(object_key, counts, now)
    if rejected:
        archive.put_rejected(object_key, rejected)
        logger.warning(
            "rejected %d line(s) of %s, kept aside; first: line %d: %s",
            len(rejected),
            object_key,
            rejected[0].line_number,
            rejected[0].reason,
        )
    if not applied:
        logger.info("object %s was already aggregated; nothing counted twice", object_key)
    return AggregationResult(object_key, applied, events, counts, rejected)
