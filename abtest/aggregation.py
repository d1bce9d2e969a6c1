"""Turn one delivered event object into counter deltas, and apply them once.

The object is streamed in blocks of whole lines. A block whose every line has the
exact shape the request path writes (`events.EVENT_LINE_FORMAT`) is counted without
parsing JSON: one regex scan and a `Counter`, both in C. Any other block is parsed
with `json.loads` line by line, so a malformed line is rejected alone, with its
number (line numbers count every line of the object, blank ones included).

A conversion is counted once however often it was logged: a client that retries after
a failure may log it twice, so each conversion is claimed in the store by the object
that counts it (`Store.claim_events`) before the object's counts are applied. In an
object the redrive wrote (under a `redriven/` folder), every invocation is claimed the
same way: its event may also have reached the log through Firehose, or through an
earlier redrive, and such objects are few and small, so the claims cost little.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable

from abtest.events import (
    CONVERSION,
    EVENT_LINE_FORMAT,
    INVOCATION,
    UNCOUNTED_ASSIGNMENTS,
    DamagedObject,
    InvalidEvent,
    event_delta,
    json_text,
    split_lines,
    valid_reward,
)
from abtest.ports import EventArchive, Store
from abtest.records import (
    AggregationResult,
    CountsByEndpoint,
    Endpoint,
    EventKey,
    RejectedLine,
    VariantCounts,
)

logger = logging.getLogger("abtest")

MAX_KEPT_LINE_CHARS = 10_000
# How long a claimed conversion is remembered: longer than any client retries, and as
# long as the longest default assignment (90 days, the embedded runtime's).
CLAIM_TTL_SECONDS = 90 * 24 * 3600

# The folder the redrive writes event objects to; see the module's docstring.
REDRIVEN_FOLDER = "redriven"

# A conversion that carries its ids: (endpoint, variant, key, delta, times logged here).
Keyed = tuple[str, str, EventKey, VariantCounts, int]


class _Tally:
    """Deltas, rejected lines and the variants each endpoint has (looked up once).

    Rejected lines go straight to `keep`, which writes them on: only their number and the
    first are held, so an object of another format, rejected whole, takes no more memory
    than a good one.
    """

    line_format = EVENT_LINE_FORMAT  # the lines `fast` counts

    def __init__(
        self,
        endpoint: Callable[[str], Endpoint | None],
        keep: Callable[[RejectedLine], None],
        *,
        key_invocations: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.keep = keep
        self.key_invocations = key_invocations
        self.counts: CountsByEndpoint = {}
        self.rejected = 0
        self.first_rejected: RejectedLine | None = None
        self.events = 0
        self.keyed: list[Keyed] = []
        self._variants: dict[str, frozenset[str] | None] = {}

    def reject(self, line: RejectedLine) -> None:
        self.keep(line)
        self.rejected += 1
        if self.first_rejected is None:
            self.first_rejected = line

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

    def add(
        self,
        endpoint_name: str,
        variant_name: str,
        delta: VariantCounts | None,
        key: EventKey | None = None,
        times: int = 1,
    ) -> None:
        """Add a delta now, or keep a keyed conversion aside until the store says to count it."""
        if key is not None and delta is not None:
            self.keyed.append((endpoint_name, variant_name, key, delta, times))
        elif delta is not None:
            variants = self.counts.setdefault(endpoint_name, {})
            variants.setdefault(variant_name, VariantCounts()).add(delta)

    def fast(self, block: bytes, line_count: int) -> bool:
        """Count a block of well-shaped lines; False (nothing counted) if any line is not."""
        if self.key_invocations:
            return False  # invocations need their ids: the slow path reads them
        line_format = self.line_format
        lines = line_format.regex.findall(block)
        if len(lines) != line_count:
            return False
        deltas = []
        # Conversions are read by position: each is its own distinct line (its ids), so a
        # dict per line, as `captures` builds, would cost more than the whole regex scan.
        conversion, at = line_format.positions(CONVERSION)
        names: dict[tuple[bytes, bytes], tuple[str, str]] = {}
        for match, n in Counter(lines).items():
            if match[conversion]:
                pair = (match[at["endpoint_name"]], match[at["variant_name"]])
                if pair not in names:
                    names[pair] = (pair[0].decode(), pair[1].decode())
                    if self.known(*names[pair]):
                        return False
                value = float(match[at["reward"]])
                if not valid_reward(value):
                    return False
                endpoint_name, variant_name = names[pair]
                user_id, inference_id = match[at["user_id"]], match[at["inference_id"]]
                # n equal lines are one conversion logged n times: it counts once.
                key = EventKey(
                    endpoint_name, json_text(user_id), json_text(inference_id), CONVERSION
                )
                delta = VariantCounts(conversion_count=1, reward_sum=value)
                deltas.append((endpoint_name, variant_name, delta, key, n))
                continue
            event_type, fields = line_format.captures(match)
            if event_type != INVOCATION:
                return False  # a type this loop does not know how to count: the slow path
            endpoint_name = fields["endpoint_name"].decode()
            variant_name = fields["variant_name"].decode()
            counted = fields["assignment"].decode() not in UNCOUNTED_ASSIGNMENTS
            delta = VariantCounts(invocation_count=n) if counted else None
            if self.known(endpoint_name, variant_name):
                return False
            deltas.append((endpoint_name, variant_name, delta, None, n))
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
                endpoint_name, variant_name, delta, key = event_delta(
                    value, key_invocations=self.key_invocations
                )
                reason = self.known(endpoint_name, variant_name)
                if reason:
                    raise InvalidEvent(reason)
            except InvalidEvent as invalid:
                text = line.decode("utf-8", "replace")[:MAX_KEPT_LINE_CHARS]
                self.reject(RejectedLine(n, str(invalid), text))
                continue
            self.events += 1
            self.add(endpoint_name, variant_name, delta, key)


def count_events(
    blocks: Iterable[bytes],
    endpoint: Callable[[str], Endpoint | None],
    keep: Callable[[RejectedLine], None],
    *,
    key_invocations: bool = False,
) -> _Tally:
    """Group deltas by endpoint and variant; reject (to `keep`) what no variant can take."""
    tally = _Tally(endpoint, keep, key_invocations=key_invocations)
    read = 0
    try:
        for block in blocks:
            line_count = block.count(b"\n") + (not block.endswith(b"\n"))
            if not tally.fast(block, line_count):
                tally.slow(block, read + 1)
            read += line_count
    except DamagedObject as damage:
        # Every whole line before the damage counts; the rest is unreadable for good, so
        # waiting or retrying would only hold back the lines that can be counted.
        logger.error("event object damaged after line %d: %s", read, damage)
        tally.reject(RejectedLine(read + 1, f"object damaged: {damage}", ""))
    return tally


def aggregate(
    store: Store, archive: EventArchive, object_key: str, now: float
) -> AggregationResult:
    # Kept aside before anything is applied: a failure to keep them fails the object whole,
    # to be retried, rather than counting it and losing what it could not count.
    with archive.open_rejected(object_key) as rejected:
        tally = count_events(
            archive.read_blocks(object_key),
            store.get_endpoint,
            rejected.write,
            key_invocations=redriven(object_key),
        )
    duplicates = _count_keyed_once(store, object_key, tally, now)
    applied = store.apply_counts(object_key, tally.counts, now)
    result = AggregationResult(
        object_key,
        applied,
        events=tally.events,
        counts=tally.counts,
        rejected=tally.rejected,
        first_rejected=tally.first_rejected,
        duplicates=duplicates,
    )
    if result.first_rejected is not None:
        logger.warning(
            "rejected %d line(s) of %s, kept aside; first: line %d: %s",
            result.rejected,
            object_key,
            result.first_rejected.line_number,
            result.first_rejected.reason,
        )
    if result.mostly_rejected:
        logger.warning(
            "most lines of %s were rejected (%d of %d): is something writing events of "
            "another format to the event log?",
            object_key,
            result.rejected,
            result.rejected + result.events,
        )
    if duplicates:
        logger.info("%d event(s) in %s were counted before; counted once", duplicates, object_key)
    if not applied:
        logger.info("object %s was already aggregated; nothing counted twice", object_key)
    return result


def redriven(object_key: str) -> bool:
    """Written by the redrive (`REDRIVEN_FOLDER` anywhere in the key), not by Firehose."""
    return f"/{REDRIVEN_FOLDER}/" in f"/{object_key}"


def _count_keyed_once(store: Store, object_key: str, tally: _Tally, now: float) -> int:
    """Add the keyed events this object may count; how many logged ones it may not."""
    first: dict[EventKey, tuple[str, str, VariantCounts]] = {}
    logged = 0
    for endpoint_name, variant_name, key, delta, times in tally.keyed:
        first.setdefault(key, (endpoint_name, variant_name, delta))
        logged += times
    if not first:
        return 0
    claimed = store.claim_events(object_key, list(first), int(now) + CLAIM_TTL_SECONDS, now)
    for key in claimed:
        tally.add(*first[key])
    return logged - len(claimed)
