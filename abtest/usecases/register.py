"""Register and deregister: open an endpoint to the API from its catalog entry, or retire it."""

from __future__ import annotations

import logging

import bandit
from abtest.ports import Clock, EndpointCatalog, Store
from abtest.records import Endpoint
from abtest.usecases import Ports
from abtest.usecases.endpoints import EndpointCache, refresh_figures

logger = logging.getLogger("abtest")


class Register:
    """Registration is an upsert: counters of variants still there are kept (see `Store`)."""

    def __init__(
        self, *, catalog: EndpointCatalog, store: Store, endpoints: EndpointCache, clock: Clock
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.endpoints = endpoints
        self.clock = clock

    @classmethod
    def from_ports(cls, ports: Ports) -> Register:
        return cls(
            catalog=ports.catalog, store=ports.store, endpoints=ports.endpoints, clock=ports.clock
        )

    def register(self, endpoint_name: str) -> Endpoint:
        config = self.catalog.describe(endpoint_name)
        bandit.get_strategy(config.strategy, config.strategy_params)  # fail before writing
        endpoint = self.store.register_endpoint(config, self.clock.now())
        refresh_figures(self.store, endpoint_name)  # the variants or the strategy may be new
        self.endpoints.forget(endpoint_name)
        logger.info(
            "registered %s: strategy=%s strategy_params=%s warmup=%s variants=%s",
            endpoint_name,
            config.strategy,
            config.strategy_params,
            config.warmup,
            [v.name for v in config.variants],
        )
        return endpoint

    def deregister(self, endpoint_name: str) -> None:
        self.store.deregister_endpoint(endpoint_name, self.clock.now())
        self.endpoints.forget(endpoint_name)
        logger.info("deregistered %s: no longer served, statistics kept", endpoint_name)
