"""Stats: an endpoint's counters, the allocation a new user would get now, and the decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from abtest.ports import Store
from abtest.records import Endpoint
from abtest.usecases import Ports
from abtest.usecases.endpoints import (
    allocation_now,
    decision_now,
    figures_of,
    unknown_endpoint,
)


@dataclass(frozen=True, slots=True)
class StatsResult:
    endpoint: Endpoint
    allocation: dict[str, float]
    decision: dict[str, Any]
    demoted: dict[str, str] = field(default_factory=dict)  # variant -> why a guardrail did


class Stats:
    """POST /stats. Reads the record itself, not through the cache: an answer is never stale."""

    def __init__(self, *, store: Store) -> None:
        self.store = store

    @classmethod
    def from_ports(cls, ports: Ports) -> Stats:
        return cls(store=ports.store)

    def __call__(self, endpoint_name: str) -> StatsResult:
        endpoint = self.store.get_endpoint(endpoint_name)
        if endpoint is None:
            raise unknown_endpoint(endpoint_name)
        # Worked out when the counters last changed, and stored with them.
        figures = figures_of(endpoint)
        allocation = allocation_now(endpoint, figures)  # the lifecycle's, paused or concluded
        decision = decision_now(endpoint, figures)  # its advice follows the lifecycle
        return StatsResult(endpoint, allocation, decision, figures.demoted)
