"""Turn one delivered event object into counter deltas, and apply them once.

The object is streamed in blocks of whole lines. A block whose every line has the
exact shape the request path writes (`event_reading.EVENT_LINE_FORMAT`) is counted without
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

import gc
import json
import logging
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import compress, repeat
from operator import itemgetter

from abtest.event_reading import (
    EVENT_LINE_FORMAT,
    EventDelta,
    InvalidEvent,
    captured_weights,
    conversion_deltas,
    event_delta,
    first_conversion_key,
    json_text,
)
from abtest.events import (
    CONVERSION,
    ERROR,
    INVOCATION,
    UNCOUNTED_ASSIGNMENTS,
    DamagedObject,
    reward_problem,
    split_lines,
)
from abtest.ports import EventArchive, Store
from abtest.records import (
    COUNTERS,
    LATENCY_COUNTERS,
    AggregationResult,
    AssignmentKind,
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
# Where the fast path's invocation counters are in such a tuple.
_AT = {c.name: i for i, c in enumerate(COUNTERS)}
_INVOCATIONS, _USERS, _MODEL_ERRORS = _AT["invocation_count"], _AT["users"], _AT["model_errors"]
_WEIGHT_SUM, _WEIGHT_SQ_SUM = _AT["weight_sum"], _AT["weight_sq_sum"]
_BUCKET_AT = {name: _AT[name] for name in LATENCY_COUNTERS}
# Captured choices as the regex gives them.
_NEW, _ERROR = AssignmentKind.NEW.encode(), ERROR.encode()
_UNCOUNTED = frozenset(kind.encode() for kind in UNCOUNTED_ASSIGNMENTS)


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
        self._add_sums(endpoint_name, variant_name, _fields_of(delta))

    def count_all(self, deltas: Iterable[tuple[str, str, VariantCounts]]) -> None:
        """`count` each; a delta repeated (the fast path shares one per shape of line) is
        added once, times how often: 40,000 conversions' additions, 31 counters wide, took
        a seventh of an object's time."""
        repeated: Counter[tuple[str, str, int]] = Counter()
        made: dict[int, VariantCounts] = {}  # each delta by its id, alive while counted
        for endpoint_name, variant_name, delta in deltas:
            repeated[endpoint_name, variant_name, id(delta)] += 1
            made[id(delta)] = delta
        for (endpoint_name, variant_name, delta_id), times in repeated.items():
            counters = _fields_of(made[delta_id])
            if times > 1:
                counters = tuple(times * value for value in counters)
            self._add_sums(endpoint_name, variant_name, counters)

    def _add_sums(
        self, endpoint_name: str, variant_name: str, counters: Iterable[int | float]
    ) -> None:
        """Add counters, in COUNTERS' order, to the variant's running sums."""
        variants = self._sums.setdefault(endpoint_name, {})
        sums = variants.get(variant_name)
        if sums is None:
            sums = variants[variant_name] = list(_ZEROS)
        # Each field added as VariantCounts.__add__ adds it, from the same zeros.
        sums[:] = map(operator.add, sums, counters)

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
        conversion_at, at = line_format.positions(CONVERSION)
        invocation_at, inv = line_format.positions(INVOCATION)
        conversions = [match for match in lines if match[conversion_at]]
        invocations = [match for match in lines if match[invocation_at]]
        if len(conversions) + len(invocations) != line_count:
            return False  # a type this path does not know how to count: the slow path
        try:
            sums = self._invocation_sums(invocations, inv)
            keyed = self._conversions(conversions, at)
        except InvalidEvent:
            return False  # the slow path rejects the line, with its number
        if sums is None or keyed is None:
            return False
        for (endpoint_name, variant_name), block_sums in sums.items():
            self._add_sums(endpoint_name, variant_name, block_sums)
        self.keyed.extend(keyed)
        self.events += line_count
        return True

    def _pair(self, pair: tuple[bytes, bytes]) -> tuple[str, str, str]:
        """(endpoint, variant, reward kind) of captured names; InvalidEvent if unknown."""
        endpoint_name, variant_name = pair[0].decode(), pair[1].decode()
        return endpoint_name, variant_name, self.reward_kind(endpoint_name, variant_name)

    def _invocation_sums(
        self, invocations: list[tuple[bytes, ...]], inv: dict[str, int]
    ) -> dict[tuple[str, str], list[int | float]] | None:
        """The counters well-shaped invocations add, by endpoint and variant; None if one
        needs the slow path.

        Each counter depends on one or two of a line's fields only, so the lines are counted
        by those projections (in C: `itemgetter` and `Counter`), never line by line in
        Python: latencies differ line by line but only their bucket counts, and a new
        user's propensity is summed as a weight (1/p and 1/p^2, as `invocation_delta`).
        """
        names = (inv["endpoint_name"], inv["variant_name"])
        kinds = Counter(map(itemgetter(*names, inv["assignment"], inv["outcome"]), invocations))
        latencies = Counter(map(itemgetter(*names, inv["latency_ms"]), invocations))
        pairs: dict[tuple[bytes, bytes], list[int | float]] = {}
        out: dict[tuple[str, str], list[int | float]] = {}

        def sums_of(endpoint: bytes, variant: bytes) -> list[int | float]:
            sums = pairs.get((endpoint, variant))
            if sums is None:
                endpoint_name, variant_name, _kind = self._pair((endpoint, variant))
                sums = pairs[endpoint, variant] = out[endpoint_name, variant_name] = list(_ZEROS)
            return sums

        for (endpoint, variant, assignment, outcome), n in kinds.items():
            sums = sums_of(endpoint, variant)
            if assignment not in _UNCOUNTED:
                sums[_INVOCATIONS] += n
                if assignment == _NEW:
                    sums[_USERS] += n
            if outcome == _ERROR:
                sums[_MODEL_ERRORS] += n
        for (endpoint, variant, latency_ms), n in latencies.items():
            if not latency_ms:
                continue  # a line logged before calls carried their latency and outcome
            if latency_ms.startswith(b"-"):
                return None  # the slow path rejects the line, with its number
            sums_of(endpoint, variant)[_BUCKET_AT[latency_counter(float(latency_ms))]] += n
        # New users' propensities, by variant: each line's own (the allocation moves), so
        # gathered in one plain loop and summed in C; a line at a time, a function call
        # each, took twice as long.
        propensities: dict[tuple[bytes, bytes], list[bytes]] = {}
        new = compress(
            invocations, map(_NEW.__eq__, map(itemgetter(inv["assignment"]), invocations))
        )
        for endpoint, variant, propensity in map(itemgetter(*names, inv["propensity"]), new):
            logged = propensities.get((endpoint, variant))
            if logged is None:
                logged = propensities[endpoint, variant] = []
            logged.append(propensity)
        for (endpoint, variant), logged in propensities.items():
            weights = captured_weights(logged)
            sums = sums_of(endpoint, variant)
            sums[_WEIGHT_SUM] += sum(weights)
            sums[_WEIGHT_SQ_SUM] += sum(map(operator.mul, weights, weights))
        return out

    def _conversions(
        self, conversions: list[tuple[bytes, ...]], at: dict[str, int]
    ) -> list[Keyed] | None:
        """Well-shaped conversions, each with its ids, to claim before counting; None if
        one needs the slow path.

        Each is its own line (its ids), so its key is made per line, but column by column
        (`map` over the lines): a loop of a dozen steps per line took a sixth of an object's
        time. What a line adds depends only on its variant, reward, propensity and
        lateness, so it is worked out once per such shape.
        """
        # n equal lines are one conversion logged n times: it counts once.
        logged = Counter(conversions)
        if not logged:
            return []
        lines = list(logged)
        shape_of = itemgetter(
            at["endpoint_name"], at["variant_name"], at["reward"], at["propensity"], at["late"]
        )
        shapes: dict[tuple[bytes, ...], tuple[str, str, VariantCounts, VariantCounts | None]] = {}
        for shape in set(map(shape_of, lines)):
            endpoint_name, variant_name, kind = self._pair(shape[:2])
            deltas = _conversion_shape(kind, *shape[2:])
            if deltas is None:
                return None
            shapes[shape] = (endpoint_name, variant_name, *deltas)
        endpoints, variants, deltas, firsts = zip(
            *map(shapes.__getitem__, map(shape_of, lines)), strict=True
        )
        users = list(map(json_text, map(itemgetter(at["user_id"]), lines)))
        inferences = map(json_text, map(itemgetter(at["inference_id"]), lines))
        keys = map(EventKey, endpoints, users, inferences, repeat(CONVERSION))
        assigned_at = map(float, map(itemgetter(at["assigned_at"]), lines))
        first_keys = map(first_conversion_key, endpoints, users, assigned_at)
        claims = [
            None if first is None else (key, first)
            for key, first in zip(first_keys, firsts, strict=True)
        ]
        return list(
            zip(
                map(EventDelta, endpoints, variants, deltas, keys, claims),
                logged.values(),
                strict=True,
            )
        )

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
    with _collector_paused():
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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while an object is counted, then back as it was.

    Counting makes hundreds of thousands of tuples and keeps tens of thousands (a key per
    conversion), and the collector, triggered by those allocations, walked them again and
    again: 17 % of an object's CPU time (200,000 events, `bench/aggregate.py`'s object).
    Nothing here makes a reference cycle, so everything is still freed as it goes; garbage
    that other threads make meanwhile waits for the next collection, about a second.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    counted: list[tuple[str, str, VariantCounts]] = []
    for key, line in first.items():  # in logged order, which `claimed` (a set) has not
        if key not in claimed:
            continue
        assert line.delta is not None
        counted.append((line.endpoint_name, line.variant_name, line.delta))
        if line.first is not None:
            first_key, delta = line.first
            # The earliest logged of an assignment's conversions here is its first.
            firsts.setdefault(first_key, (line.endpoint_name, line.variant_name, delta))
    if firsts:
        counted += map(firsts.__getitem__, store.claim_events(object_key, list(firsts), ttl, now))
    tally.count_all(counted)
    return logged - len(claimed)
