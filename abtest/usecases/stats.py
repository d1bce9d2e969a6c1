"""Stats: an endpoint's counters, the allocation a new user would get now, and the decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abtest.ports import Store
from abtest.records import Endpoint
from abtest.usecases import Ports
from abtest.usecases.endpoints import current_allocation, unknown_endpoint


@dataclass(frozen=True, slots=True)
class StatsResult:
    endpoint: Endpoint
    allocation: dict[str, float]
    decision: dict[str, Any]


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
        # Imported here: statistics are for /stats, not for the invocation path's cold start.
        from bandit.stats import decision

        allocation = current_allocation(endpoint)
        return StatsResult(
            endpoint=endpoint,
            allocation=allocation,
            # The allocation new users get is what the users still needed are counted at.
            decision=decision(endpoint.variant_metrics, allocation=allocation).as_dict(),
        )
