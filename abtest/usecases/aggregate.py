"""Aggregate: count one delivered event object into the metrics records, once."""

from __future__ import annotations

import logging

from abtest import aggregation
from abtest.history import History
from abtest.ports import Clock, Count, EventArchive, Store, Telemetry
from abtest.records import AggregationResult
from abtest.usecases import Ports
from abtest.usecases.auto_conclude import AutoConclude
from abtest.usecases.endpoints import EndpointCache, refreshed_endpoint
from abtest.usecases.history import record_snapshot

logger = logging.getLogger("abtest")


class Aggregate:
    """Runs beside the request path (S3 notifications on AWS, sealed buffers embedded)."""

    def __init__(
        self,
        *,
        store: Store,
        history: History,
        endpoints: EndpointCache,
        clock: Clock,
        telemetry: Telemetry,
        auto_conclude: AutoConclude | None = None,
    ) -> None:
        self.store = store
        self.history = history
        self.endpoints = endpoints
        self.clock = clock
        self.telemetry = telemetry
        self.auto_conclude = auto_conclude

    @classmethod
    def from_ports(cls, ports: Ports) -> Aggregate:
        return cls(
            store=ports.store,
            history=ports.history,
            endpoints=ports.endpoints,
            clock=ports.clock,
            telemetry=ports.telemetry,
            auto_conclude=AutoConclude.from_ports(ports),
        )

    def __call__(self, archive: EventArchive, object_key: str) -> AggregationResult:
        now = self.clock.now()
        result = aggregation.aggregate(self.store, archive, object_key, now)
        for endpoint_name in result.counts:
            self.endpoints.recount(endpoint_name)
            # Here, once per change, not per request: the allocation and /stats' figures.
            # Also after a repeat, in case a crash came between the counts and their figures.
            # The record they were stored from serves the next two steps (None: they read it).
            endpoint = refreshed_endpoint(self.store, endpoint_name)
            # And what it left the endpoint at, for the history: once per object, so a
            # repeat adds one only if a crash came before the first attempt's.
            record_snapshot(self.store, self.history, endpoint_name, object_key, now, endpoint)
            # Last, on the figures just stored: a winner called concludes an auto_conclude
            # endpoint (also after a repeat, in case a crash came before the first's).
            if self.auto_conclude is not None:
                try:
                    self.auto_conclude(endpoint_name, endpoint)
                except Exception:
                    # The counts are committed; the endpoint's next aggregation tries again.
                    logger.exception("auto-conclude of %s failed; retried next time", endpoint_name)
        if result.applied and result.mostly_rejected:
            # The alarm on AWS, `/health` embedded: counted once per object, not per retry.
            self.telemetry.count(Count.MOSTLY_REJECTED_OBJECTS, None)
        return result
