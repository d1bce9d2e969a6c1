"""Turn one delivered event object into counter deltas, and apply them once.

Lines are parsed in chunks (one `json.loads` per chunk of lines joined into an
array), which is several times cheaper than a call per line; a chunk holding a
malformed line is re-parsed line by line so only the bad lines are rejected.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from abtest.events import InvalidEvent, event_delta
from abtest.ports import EventArchive, Store
from abtest.records import (
    AggregationResult,
    CountsByEndpoint,
    Endpoint,
    RejectedLine,
    VariantCounts,
)

logger = logging.getLogger("abtest")

CHUNK_LINES = 2_000
MAX_KEPT_LINE_CHARS = 10_000


def _parsed(lines: Iterable[bytes]) -> Iterator[tuple[int, object, str | None]]:
    """(line number, parsed value or None, error) for every non-blank line, in order."""
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
    while chunk := list(islice(numbered, CHUNK_LINES)):
        try:
            values = json.loads(b"[" + b",".join(line for _, line in chunk) + b"]")
            if len(values) == len(chunk):
                for (n, _), value in zip(chunk, values, strict=True):
                    yield n, value, None
                continue
        except ValueError:
            pass
        for n, line in chunk:
            try:
                yield n, json.loads(line), None
            except ValueError as error:
                yield n, line, f"not JSON: {error}"


def count_events(
    lines: Iterable[bytes], endpoint: Callable[[str], Endpoint | None]
) -> tuple[CountsByEndpoint, int, list[RejectedLine]]:
    """Group deltas by endpoint and variant; reject what no registered variant can take."""
    counts: CountsByEndpoint = {}
    rejected: list[RejectedLine] = []
    events = 0
    known: dict[str, frozenset[str] | None] = {}
    for n, value, error in _parsed(lines):
        try:
            if error:
                raise InvalidEvent(error)
            endpoint_name, variant_name, delta = event_delta(value)
            if endpoint_name not in known:
                record = endpoint(endpoint_name)
                known[endpoint_name] = frozenset(record.variant_names) if record else None
            variants = known[endpoint_name]
            if variants is None:
                raise InvalidEvent(f"unknown endpoint {endpoint_name!r}")
            if variant_name not in variants:
                raise InvalidEvent(f"unknown variant {variant_name!r} on {endpoint_name!r}")
        except InvalidEvent as invalid:
            text = (
                value.decode("utf-8", "replace") if isinstance(value, bytes) else json.dumps(value)
            )
            rejected.append(RejectedLine(n, str(invalid), text[:MAX_KEPT_LINE_CHARS]))
            continue
        events += 1
        if delta is not None:
            counts.setdefault(endpoint_name, {}).setdefault(variant_name, VariantCounts()).add(
                delta
            )
    return counts, events, rejected


def aggregate(
    store: Store, archive: EventArchive, object_key: str, now: float
) -> AggregationResult:
    counts, events, rejected = count_events(archive.read_lines(object_key), store.get_endpoint)
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
