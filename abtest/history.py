"""An endpoint's history: a snapshot per applied aggregation, kept with bounded retention.

`/stats` is one moment; the dashboard charts how an experiment got there (allocation share,
probability of being best, the estimate and its interval), so aggregation stores what each
applied event object left behind (`abtest.usecases.history`), and `POST /history` reads it.

Retention, the same on every store: snapshots are numbered 1, 2, 3 ... per endpoint. The
latest `RECENT` are all kept; older ones are thinned by age, keeping one in 2 for the next
`RECENT` snapshots, one in 4 for the `2 * RECENT` after, one in 8 for the `4 * RECENT` after
that, and so on; the first is kept for ever (the experiment's start). A long experiment keeps
its whole arc, ever coarser the further back, in about `RECENT + RECENT / 2 * log2(n / RECENT)`
snapshots (some 1,400 after a million aggregations). Whether a snapshot is kept depends only
on its number and the latest's, and once dropped it would never be kept again, so each write
deletes exactly the few snapshots that `thinned_by` names, in the same transaction, with no
read of the others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

# Kept at full resolution: at the default 60 s buffer interval, the last three hours and more.
RECENT = 200
# What `POST /history` returns unless asked otherwise, and the most it returns.
DEFAULT_LIMIT = 500
MAX_LIMIT = 2000


def _stride(age: int) -> int:
    """One snapshot in `_stride(age)` is kept at `age` snapshots behind the latest."""
    if age < RECENT:
        return 1
    return 2 ** ((age // RECENT).bit_length())


def kept(seq: int, latest: int) -> bool:
    """Whether snapshot `seq` is still kept once `latest` has been written."""
    return seq == 1 <= latest or (1 <= seq <= latest and seq % _stride(latest - seq) == 0)


def thinned_by(latest: int) -> list[int]:
    """The snapshots that writing `latest` drops: one per age band whose edge they cross."""
    dropped = []
    edge, stride = RECENT, 1  # at age `edge` the stride doubles from `stride`
    while latest - edge >= 1:
        seq = latest - edge
        if seq > 1 and seq % stride == 0 and seq % (2 * stride) != 0:
            dropped.append(seq)
        edge, stride = edge * 2, stride * 2
    return dropped


def kept_seqs(latest: int, limit: int) -> list[int]:
    """The newest `limit` kept snapshot numbers, newest first, without walking the gaps."""
    found: list[int] = []
    seq = latest
    while seq > 1 and len(found) < limit:
        stride = _stride(latest - seq)
        seq -= seq % stride  # the nearest multiple of the stride at or below
        if seq > 1 and kept(seq, latest):
            found.append(seq)
            seq -= 1
    if latest >= 1 and len(found) < limit:
        found.append(1)
    return found


@dataclass(frozen=True, slots=True)
class VariantSnapshot:
    """One variant after an aggregation: its counters, its share of new users, and the
    decision's figures for it (null before a variant has any)."""

    variant_name: str
    invocation_count: int
    conversion_count: int
    reward_sum: float
    allocation: float
    probability_best: float | None
    estimate: float | None
    estimate_interval: tuple[float, float] | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An endpoint as one applied event object left it. `seq` is given by the store."""

    endpoint_name: str
    taken_at: float
    strategy: str  # the strategy that allocated: WeightedSampling while warming up
    warming_up: bool
    winner: str | None
    reason: str
    variants: tuple[VariantSnapshot, ...]
    seq: int = 0

    def to_json(self) -> str:
        body = asdict(self)
        del body["seq"], body["endpoint_name"]  # the store's key holds them
        return json.dumps(body)

    @classmethod
    def from_json(cls, endpoint_name: str, seq: int, text: str) -> Snapshot:
        body = json.loads(text)
        variants = tuple(
            VariantSnapshot(
                **{
                    **v,
                    "estimate_interval": tuple(v["estimate_interval"])
                    if v["estimate_interval"] is not None
                    else None,
                }
            )
            for v in body.pop("variants")
        )
        return cls(endpoint_name=endpoint_name, seq=seq, variants=variants, **body)


def variant_estimate(figures: Mapping[str, Any]) -> tuple[float | None, list[float] | None]:
    """The estimate and its interval as a decision's variant entry reports them.

    The statistics of issue 9 name them `estimate` and `estimate_interval`; decisions
    without those carry the Beta posterior's `posterior_mean` and `credible_interval`,
    which is what they were until then.
    """
    estimate = figures.get("estimate", figures.get("posterior_mean"))
    interval = figures.get("estimate_interval", figures.get("credible_interval"))
    return estimate, list(interval) if interval is not None else None


class History(Protocol):
    """Where snapshots are kept: beside the metrics records (SQLite tables, or items in the
    DynamoDB metrics table). Raises StoreUnavailableError when unreachable."""

    def record_snapshot(self, snapshot: Snapshot, object_key: str, now: float) -> bool:
        """Append `snapshot` as its endpoint's next one, unless `object_key` already left
        one (False, changing nothing): an object redelivered or re-aggregated after a
        crash never adds a second. Drops what `thinned_by` names in the same write."""
        ...

    def snapshots(self, endpoint_name: str, limit: int) -> list[Snapshot]:
        """The newest `limit` kept snapshots, oldest first ([] for none)."""
        ...
