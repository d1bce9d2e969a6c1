"""The HTTP routes, declared once: the request path, the OpenAPI document, the Lambda handler,
the CDK API stack and the tests all read this.

Adding a route takes one entry here, its bodies (`abtest/http/bodies.py`) and its use case
(`abtest/usecases/`); the request path, the embedded server, the API Gateway route, the
function (`lambdas/api.py`), its environment and its permissions follow from the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from abtest.http.bodies import (
    ConversionRequest,
    ConversionResponse,
    HistoryRequest,
    HistoryResponse,
    InvocationRequest,
    InvocationResponse,
    StatsRequest,
    StatsResponse,
)
from abtest.usecases.convert import Convert
from abtest.usecases.history import ShowHistory
from abtest.usecases.invoke import Invoke
from abtest.usecases.stats import Stats


class Need(StrEnum):
    """What a route's function is given; the API stack maps each to environment and grants."""

    ENDPOINTS = "endpoints"  # read endpoint records (the metrics table)
    ENDPOINT_CACHE = "endpoint_cache"  # ... and keep them for a few seconds
    ASSIGNMENTS = "assignments"  # read and write assignments and conversion markers
    EVENTS = "events"  # append to the event log (Firehose, its dead-letter queue)
    MODELS = "models"  # call the model variants (SageMaker endpoints)
    HISTORY = "history"  # read the endpoints' history (items in the metrics table)


@dataclass(frozen=True, slots=True)
class Route:
    """`POST /<name>`: `request` is mapped to the use case's input, its result to `response`."""

    name: str  # the path, and the function's name
    summary: str
    answer: str  # what a 200 carries, for the OpenAPI document
    request: type[BaseModel]
    response: type[BaseModel]
    use_case: Any  # a class with `from_ports(ports)`, whose instances are called per request
    needs: frozenset[Need]

    @property
    def path(self) -> str:
        return f"/{self.name}"


ROUTES: tuple[Route, ...] = (
    Route(
        name="invocation",
        summary="Invoke the user's model variant",
        answer="The variant's predictions and assignment",
        request=InvocationRequest,
        response=InvocationResponse,
        use_case=Invoke,
        needs=frozenset(
            {Need.ENDPOINTS, Need.ENDPOINT_CACHE, Need.ASSIGNMENTS, Need.EVENTS, Need.MODELS}
        ),
    ),
    Route(
        name="conversion",
        summary="Reward the user's variant",
        answer="The credited variant; duplicate on repeat",
        request=ConversionRequest,
        response=ConversionResponse,
        use_case=Convert,
        needs=frozenset({Need.ENDPOINTS, Need.ENDPOINT_CACHE, Need.ASSIGNMENTS, Need.EVENTS}),
    ),
    Route(
        name="stats",
        summary="Counters, allocation and decision",
        answer="Per-variant counters, allocation, decision",
        request=StatsRequest,
        response=StatsResponse,
        use_case=Stats,
        needs=frozenset({Need.ENDPOINTS}),
    ),
    Route(
        name="history",
        summary="Snapshots of the experiment over time",
        answer="A snapshot per aggregation, oldest first",
        request=HistoryRequest,
        response=HistoryResponse,
        use_case=ShowHistory,
        needs=frozenset({Need.ENDPOINTS, Need.HISTORY}),
    ),
)
ROUTE_NAMES = tuple(route.name for route in ROUTES)


def route_named(name: str) -> Route:
    for route in ROUTES:
        if route.name == name:
            return route
    raise ValueError(f"unknown route {name!r}; choose from {', '.join(ROUTE_NAMES)}")
