"""Register and deregister: open an endpoint to the API from its catalog entry, or retire it."""

from __future__ import annotations

import logging

import bandit
from abtest.errors import AbtestError
from abtest.lifecycle import REGISTRATION_ACTOR, Action, Promotion
from abtest.ports import Clock, EndpointCatalog, ModelHost, Store
from abtest.records import Endpoint
from abtest.usecases import Ports
from abtest.usecases.admin import ChangeLifecycle, LifecycleChange
from abtest.usecases.endpoints import EndpointCache, refresh_figures

logger = logging.getLogger("abtest")


class Register:
    """Registration is an upsert: counters of variants still there are kept (see `Store`)."""

    def __init__(
        self,
        *,
        catalog: EndpointCatalog,
        store: Store,
        endpoints: EndpointCache,
        clock: Clock,
        model_host: ModelHost,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.endpoints = endpoints
        self.clock = clock
        self.model_host = model_host
        self.promotion = ChangeLifecycle(
            store=store, endpoints=endpoints, clock=clock, model_host=model_host
        )

    @classmethod
    def from_ports(cls, ports: Ports) -> Register:
        return cls(
            catalog=ports.catalog,
            store=ports.store,
            endpoints=ports.endpoints,
            clock=ports.clock,
            model_host=ports.model_host,
        )

    def register(self, endpoint_name: str) -> Endpoint:
        config = self.catalog.describe(endpoint_name)
        # Fail before writing.
        bandit.get_strategy(config.strategy, config.strategy_params, reward=config.settings.reward)
        endpoint = self.store.register_endpoint(config, self.clock.now())
        refresh_figures(self.store, endpoint_name)  # the variants or the strategy may be new
        self.endpoints.reread(endpoint_name, self.clock.now())
        logger.info(
            "registered %s: strategy=%s strategy_params=%s warmup=%s variants=%s",
            endpoint_name,
            config.strategy,
            config.strategy_params,
            config.warmup,
            [v.name for v in config.variants],
        )
        if endpoint.lifecycle.promotion is Promotion.PENDING and self.model_host.keeps_weights:
            return self._finish_promotion(endpoint)
        return endpoint

    def _finish_promotion(self, endpoint: Endpoint) -> Endpoint:
        """A conclusion whose promotion failed (SageMaker was updating, or throttled) is
        finished here, as a person's retry would: SageMaker registers an endpoint again
        when it is back in service, just when it takes new weights. Still failing, it stays
        pending (logged), for the next registration or a person to finish."""
        name = endpoint.endpoint_name
        change = LifecycleChange(
            name,
            Action.CONCLUDE,
            actor=REGISTRATION_ACTOR,
            reason="registered again: finishing the winner's pending promotion",
        )
        try:
            return self.promotion(change).endpoint
        except AbtestError as error:
            logger.warning("%s: the winner's promotion is still pending: %s", name, error.message)
            return endpoint

    def deregister(self, endpoint_name: str) -> None:
        self.store.deregister_endpoint(endpoint_name, self.clock.now())
        self.endpoints.forget(endpoint_name)
        logger.info("deregistered %s: no longer served, statistics kept", endpoint_name)
