"""History: a snapshot of each endpoint an applied event object changed, and `POST /history`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from abtest.history import History, Snapshot, VariantSnapshot, variant_estimate
from abtest.ports import Store
from abtest.records import Endpoint, Figures
from abtest.usecases import Ports
from abtest.usecases.endpoints import allocation_now, figures_of, unknown_endpoint

logger = logging.getLogger("abtest")


def snapshot_of(endpoint: Endpoint, figures: Figures, now: float) -> Snapshot:
    """What the record and its figures say now, per variant."""
    by_name = {v["variant_name"]: v for v in figures.decision.get("variants", ())}
    allocation = allocation_now(endpoint, figures)  # a concluded one's winner takes all
    variants = []
    for v in endpoint.variants:
        m = v.counts
        decided = by_name.get(v.variant_name, {})
        estimate, interval = variant_estimate(decided)
        variants.append(
            VariantSnapshot(
                variant_name=v.variant_name,
                invocation_count=m.invocation_count,
                conversion_count=m.conversion_count,
                reward_sum=m.reward_sum,
                allocation=allocation.get(v.variant_name, 0.0),
                probability_best=decided.get("probability_best"),
                estimate=estimate,
                estimate_interval=tuple(interval) if interval is not None else None,
            )
        )
    return Snapshot(
        endpoint_name=endpoint.endpoint_name,
        taken_at=now,
        strategy=figures.strategy,
        # The deciding strategy differs from the configured one only during warm-up.
        warming_up=figures.strategy != endpoint.strategy,
        winner=figures.decision.get("winner"),
        reason=figures.decision.get("reason", ""),
        variants=tuple(variants),
    )


def record_snapshot(
    store: Store,
    history: History,
    endpoint_name: str,
    object_key: str,
    now: float,
    endpoint: Endpoint | None = None,
) -> bool:
    """Keep what `object_key` left `endpoint_name` at (once per object, however often it is
    aggregated). Run by aggregation after the figures are stored: it reads them back unless
    given the record they were stored from (`endpoint`)."""
    try:
        endpoint = endpoint or store.get_endpoint(endpoint_name)
        if endpoint is None:
            return False
        snapshot = snapshot_of(endpoint, figures_of(endpoint), now)
        return history.record_snapshot(snapshot, object_key, now)
    except Exception:
        # The counters are committed and the history is for charts: a gap, not a failure.
        logger.exception("snapshot of %s after %s not stored", endpoint_name, object_key)
        return False


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    endpoint_name: str
    limit: int


@dataclass(frozen=True, slots=True)
class HistoryResult:
    endpoint_name: str
    snapshots: list[Snapshot]


class ShowHistory:
    """POST /history: the newest snapshots of a registered endpoint, oldest first."""

    def __init__(self, *, store: Store, history: History) -> None:
        self.store = store
        self.history = history

    @classmethod
    def from_ports(cls, ports: Ports) -> ShowHistory:
        return cls(store=ports.store, history=ports.history)

    def __call__(self, query: HistoryQuery) -> HistoryResult:
        if self.store.get_endpoint(query.endpoint_name) is None:
            raise unknown_endpoint(query.endpoint_name)
        return HistoryResult(
            query.endpoint_name, self.history.snapshots(query.endpoint_name, query.limit)
        )
