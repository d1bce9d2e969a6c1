"""The use cases: invoke, convert, stats, register (and deregister), aggregate, history, admin.

Each takes exactly the ports it uses, and the request-path ones share one
`EndpointCache`. They take and return core values (the dataclasses beside them):
`abtest.http` maps request bodies to those and results back to response bodies,
and the entry points (`lambdas/`, `abtest.embedded`) build only what they serve.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from abtest.history import History
    from abtest.ports import (
        Clock,
        EndpointCatalog,
        EventSink,
        ModelEndpoint,
        ModelHost,
        Store,
        Telemetry,
    )
    from abtest.usecases.endpoints import EndpointCache


class Ports(Protocol):
    """What a runtime offers to build use cases from (`UseCase.from_ports`).

    The embedded runtime builds every port up front; a Lambda builds each on first use,
    so a function builds only the ports of the use case it serves.
    """

    @property
    def endpoints(self) -> EndpointCache: ...
    @property
    def store(self) -> Store: ...
    @property
    def history(self) -> History: ...
    @property
    def models(self) -> ModelEndpoint: ...
    @property
    def model_host(self) -> ModelHost: ...
    @property
    def events(self) -> EventSink: ...
    @property
    def catalog(self) -> EndpointCatalog: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def telemetry(self) -> Telemetry: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def assignment_ttl_seconds(self) -> AssignmentTtl: ...


# How long a user keeps their variant: one TTL for every endpoint (a deployed stage), or
# one per endpoint (an embedded server of several, each with its own config).
AssignmentTtl = int | Mapping[str, int]


def ttl_seconds(ttl: AssignmentTtl, endpoint_name: str) -> int:
    return ttl if isinstance(ttl, int) else ttl[endpoint_name]
