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
import operator
from collections import Counter
from collections.abc import Callable, Iterable

from abtest.events import (
    CONVERSION,
    EVENT_LINE_FORMAT,
    INVOCATION,
    DamagedObject,
    EventDelta,
    InvalidEvent,
    conversion_deltas,
    event_delta,
    first_conversion_key,
    invocation_delta,
    json_text,
    reward_problem,
    split_lines,
)
from abtest.ports import EventArchive, Store
from abtest.records import (
    COUNTERS,
    AggregationResult,
    CountsByEndpoint,
    Endpoint,
    EventKey,
    RejectedLine,
    VariantCounts,
    latency_counter,
)

logger = logging.getLogger("abtest")

MAX_KEPT_LINE_CHARS = 10_000
# How long a claimed conversion is remembered: longer than any client retries, and as
# long as the longest default assignment (90 days, the embedded runtime's).
CLAIM_TTL_SECONDS = 90 * 24 * 3600

# The folder the redrive writes event objects to; see the module's docstring.
REDRIVEN_FOLDER = "redriven"

# A conversion that carries its ids: the line's delta, and how often it was logged here.
Keyed = tuple[EventDelta, int]


# A record's counters as a tuple, in COUNTERS' (the dataclass fields') order.
_fields_of = operator.attrgetter(*(c.name for c in COUNTERS))
_ZEROS = _fields_of(VariantCounts())


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
        # endpoint -> variant -> its counters' running sums, in COUNTERS' order: a list
        # added to in place, since a record per delta (31 fields) cost most of an
        # object's time (`counts` makes the records, with the same sums)
        self._sums: dict[str, dict[str, list[int | float]]] = {}
        self.rejected = 0
        self.first_rejected: RejectedLine | None = None
        self.events = 0
        self.keyed: list[Keyed] = []
        # endpoint -> (its variants, its reward kind), or None for an unknown endpoint
        self._endpoints: dict[str, tuple[frozenset[str], str] | None] = {}

    def reject(self, line: RejectedLine) -> None:
        self.keep(line)
        self.rejected += 1
        if self.first_rejected is None:
            self.first_rejected = line

    def reward_kind(self, endpoint_name: str, variant_name: str) -> str:
        """The endpoint's reward kind; InvalidEvent if the variant can take no counts."""
        if endpoint_name not in self._endpoints:
            record = self.endpoint(endpoint_name)
            self._endpoints[endpoint_name] = (
                (frozenset(record.variant_names), record.settings.reward) if record else None
            )
        known = self._endpoints[endpoint_name]
        if known is None:
            raise InvalidEvent(f"unknown endpoint {endpoint_name!r}")
        if variant_name not in known[0]:
            raise InvalidEvent(f"unknown variant {variant_name!r} on {endpoint_name!r}")
        return known[1]

    def add(self, line: EventDelta, times: int = 1) -> None:
        """Add a delta now, or keep a keyed event aside until the store says to count it."""
        if line.delta is None:
            return
        if line.key is not None:
            self.keyed.append((line, times))
        else:
            self.count(line.endpoint_name, line.variant_name, line.delta)

    def count(self, endpoint_name: str, variant_name: str, delta: VariantCounts) -> None:
        variants = self._sums.setdefault(endpoint_name, {})
        sums = variants.get(variant_name)
        if sums is None:
            sums = variants[variant_name] = list(_ZEROS)
        # Each field added as VariantCounts.__add__ adds it, from the same zeros: the same
        # sums, bit for bit, as a record per delta gave.
        sums[:] = map(operator.add, sums, _fields_of(delta))

    @property
    def counts(self) -> CountsByEndpoint:
        """What was counted, by endpoint and variant."""
        return {
            endpoint: {variant: VariantCounts(*sums) for variant, sums in variants.items()}
            for endpoint, variants in self._sums.items()
        }

    def fast(self, block: bytes, line_count: int) -> bool:
        """Count a block of well-shaped lines; False (nothing counted) if any line is not."""
        if self.key_invocations:
            return False  # invocations need their ids: the slow path reads them
        line_format = self.line_format
        lines = line_format.regex.findall(block)
        if len(lines) != line_count:
            return False
        deltas: list[tuple[EventDelta, int]] = []
        # Conversions are read by position: each is its own distinct line (its ids), so a
        # dict per line, as `captures` builds, would cost more than the whole regex scan.
        conversion, at = line_format.positions(CONVERSION)
        invocation, inv = line_format.positions(INVOCATION)
        # (endpoint, variant, assignment, propensity, latency bucket, outcome) -> lines
        invocations: dict[tuple[bytes, bytes, bytes, bytes, str | None, bytes], int] = {}
        names: dict[tuple[bytes, bytes], tuple[str, str, str]] = {}
        shapes: dict[tuple[str, bytes, bytes, bytes], _Deltas | None] = {}
        try:
            for match, n in Counter(lines).items():
                if match[conversion]:
                    pair = (match[at["endpoint_name"]], match[at["variant_name"]])
                    if pair not in names:
                        endpoint_name, variant_name = pair[0].decode(), pair[1].decode()
                        kind = self.reward_kind(endpoint_name, variant_name)
                        names[pair] = (endpoint_name, variant_name, kind)
                    endpoint_name, variant_name, kind = names[pair]
                    # Most conversions share their reward, propensity and lateness: their
                    # deltas are worked out once per shape, not once per line.
                    shape = (kind, match[at["reward"]], match[at["propensity"]], match[at["late"]])
                    if shape not in shapes:
                        shapes[shape] = _conversion_shape(*shape)
                    deltas_of_shape = shapes[shape]
                    if deltas_of_shape is None:
                        return False
                    delta, first = deltas_of_shape
                    user_id = json_text(match[at["user_id"]])
                    # n equal lines are one conversion logged n times: it counts once.
                    key = EventKey(
                        endpoint_name, user_id, json_text(match[at["inference_id"]]), CONVERSION
                    )
                    claim = None
                    if first is not None:
                        assigned_at = float(match[at["assigned_at"]])
                        claim = (first_conversion_key(endpoint_name, user_id, assigned_at), first)
                    deltas.append((EventDelta(endpoint_name, variant_name, delta, key, claim), n))
                    continue
                if not match[invocation]:
                    return False  # a type this loop does not know how to count: the slow path
                latency_ms = match[inv["latency_ms"]]
                if latency_ms.startswith(b"-"):
                    return False  # the slow path rejects the line, with its number
                # Invocations are counted by shape: their latencies differ line by line, but
                # only the bucket each falls in adds to the counters.
                shape = (
                    match[inv["endpoint_name"]],
                    match[inv["variant_name"]],
                    match[inv["assignment"]],
                    match[inv["propensity"]],
                    # Empty: a line logged before calls carried their latency and outcome.
                    latency_counter(float(latency_ms)) if latency_ms else None,
                    match[inv["outcome"]],
                )
                invocations[shape] = invocations.get(shape, 0) + n
            for shape, n in invocations.items():
                endpoint_bytes, variant_bytes, assignment, propensity, bucket, outcome = shape
                endpoint_name, variant_name = endpoint_bytes.decode(), variant_bytes.decode()
                self.reward_kind(endpoint_name, variant_name)
                delta = invocation_delta(
                    assignment.decode(),
                    None if propensity == b"null" else float(propensity),
                    n,
                    bucket=bucket,
                    outcome=outcome.decode() or None,
                )
                deltas.append((EventDelta(endpoint_name, variant_name, delta), n))
        except InvalidEvent:
            return False  # the slow path rejects the line, with its number
        for line, n in deltas:
            self.add(line, n)
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
                line_delta = event_delta(
                    value, self.reward_kind, key_invocations=self.key_invocations
                )
            except InvalidEvent as invalid:
                text = line.decode("utf-8", "replace")[:MAX_KEPT_LINE_CHARS]
                self.reject(RejectedLine(n, str(invalid), text))
                continue
            self.events += 1
            self.add(line_delta)


_Deltas = tuple[VariantCounts, VariantCounts | None]


def _conversion_shape(kind: str, reward: bytes, propensity: bytes, late: bytes) -> _Deltas | None:
    """A well-shaped conversion's deltas (`conversion_deltas`) from its captured bytes, or
    None if the endpoint's reward kind cannot take its reward (the slow path says why)."""
    value = float(reward)
    if reward_problem(value, kind):
        return None
    return conversion_deltas(
        value,
        late=late == b"true",
        propensity=None if propensity == b"null" else float(propensity),
        first=True,
    )


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
    counts = tally.counts
    applied = store.apply_counts(object_key, counts, now)
    result = AggregationResult(
        object_key,
        applied,
        events=tally.events,
        counts=counts,
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
    """Add the keyed events this object may count; how many logged ones it may not.

    Then, of the conversions it counts, each assignment's first: claimed by the assignment
    (its user and time), so a second conversion of the user, in this object or any other,
    a retry or a redrive, never counts the user twice. Claimed only after the conversions'
    own claims, so a conversion counted elsewhere never makes its user's first either; a
    crash in between leaves the object uncounted, and its redelivery claims the same keys.
    """
    first: dict[EventKey, EventDelta] = {}
    logged = 0
    for line, times in tally.keyed:
        assert line.key is not None  # only keyed lines are kept aside
        first.setdefault(line.key, line)
        logged += times
    if not first:
        return 0
    ttl = int(now) + CLAIM_TTL_SECONDS
    claimed = store.claim_events(object_key, list(first), ttl, now)
    firsts: dict[EventKey, tuple[str, str, VariantCounts]] = {}
    for key, line in first.items():  # in logged order, which `claimed` (a set) has not
        if key not in claimed:
            continue
        assert line.delta is not None
        tally.count(line.endpoint_name, line.variant_name, line.delta)
        if line.first is not None:
            first_key, delta = line.first
            # The earliest logged of an assignment's conversions here is its first.
            firsts.setdefault(first_key, (line.endpoint_name, line.variant_name, delta))
    if firsts:
        for key in store.claim_events(object_key, list(firsts), ttl, now):
            tally.count(*firsts[key])
    return logged - len(claimed)
