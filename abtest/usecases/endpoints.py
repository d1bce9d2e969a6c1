"""An endpoint's record as the use cases see it: cached briefly, its strategy built once."""

from __future__ import annotations

from dataclasses import dataclass

import bandit
from abtest.errors import NotFoundError
from abtest.ports import Store
from abtest.records import DELETED, Endpoint


def configured_strategy(endpoint: Endpoint) -> bandit.Strategy:
    """The one place an endpoint's strategy is built from its record."""
    return bandit.get_strategy(endpoint.strategy, endpoint.strategy_params)


def current_allocation(endpoint: Endpoint) -> dict[str, float]:
    """The probabilities a new user would be assigned with now (warm-up included)."""
    strategy = bandit.deciding_strategy(
        configured_strategy(endpoint), endpoint.variant_metrics, endpoint.warmup
    )
    return strategy.allocation(endpoint.variant_metrics)


def unknown_endpoint(name: str) -> NotFoundError:
    return NotFoundError(
        f"endpoint_name: {name!r} is not a registered endpoint",
        details=[{"field": "endpoint_name", "message": "not registered"}],
    )


@dataclass(frozen=True, slots=True)
class ServedEndpoint:
    """A registered, active endpoint and the strategy built from its record."""

    endpoint: Endpoint
    strategy: bandit.Strategy


class EndpointCache:
    """Metrics records read at most once per `ttl_seconds`, shared by one process's use cases.

    Metrics change only when aggregation runs (every buffer interval), so a short cache
    saves a store read on every request. Registration and aggregation `forget` what they
    change, so the process that changed a record sees the change at once.
    """

    def __init__(self, store: Store, ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        # name -> (the endpoint if served, None if unknown or deleted; when it was read)
        self._entries: dict[str, tuple[ServedEndpoint | None, float]] = {}

    def served(self, name: str, now: float) -> ServedEndpoint:
        """The endpoint if it is registered and active; NotFoundError (404) otherwise."""
        entry = self._entries.get(name)
        if entry is None or now - entry[1] >= self.ttl_seconds:
            endpoint = self.store.get_endpoint(name)
            served = None
            if endpoint is not None and endpoint.status != DELETED:
                served = ServedEndpoint(endpoint, configured_strategy(endpoint))
            entry = self._entries[name] = (served, now)
        if entry[0] is None:
            raise unknown_endpoint(name)
        return entry[0]

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)
