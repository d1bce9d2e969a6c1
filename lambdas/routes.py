"""What an API route's function adds to `lambdas/wiring.py`: its environment, its entry point.

Apart from the wiring the metrics and register functions share, so that they import
none of the HTTP layer (the resolver, the request bodies) at their cold start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import field_validator

from abtest.http.resolver import handle
from abtest.http.routes import ALL_ROUTES, Need, Route
from lambdas.wiring import (
    AssignmentsEnvironment,
    EndpointCacheEnvironment,
    EndpointsEnvironment,
    EventsEnvironment,
    LambdaEnvironment,
    ModelsEnvironment,
    logger,
    metrics,
)

if TYPE_CHECKING:  # annotations only: importing these costs a cold start ~50 ms for nothing
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from abtest.http.api import Api


class ApiEnvironment(LambdaEnvironment):
    """Which route an API function serves; the rest of its environment follows from the route."""

    route: str

    @field_validator("route")
    @classmethod
    def _a_route(cls, value: str) -> str:
        names = [route.name for route in ALL_ROUTES]
        if value not in names:
            raise ValueError(f"{value!r} is not a route ({', '.join(names)})")
        return value


# What each need of a route asks of the function's environment (the API stack sets it).
NEED_ENVIRONMENTS: dict[Need, type[LambdaEnvironment] | None] = {
    Need.ENDPOINTS: EndpointsEnvironment,
    Need.ENDPOINT_CACHE: EndpointCacheEnvironment,
    Need.ASSIGNMENTS: AssignmentsEnvironment,
    Need.EVENTS: EventsEnvironment,
    # SageMaker endpoints are named per request, within the IAM prefix; only the timeout is set.
    Need.MODELS: ModelsEnvironment,
    # Lifecycles and audit logs live in the metrics table too: only the write grant differs.
    Need.LIFECYCLE: EndpointsEnvironment,
    Need.LISTING: EndpointsEnvironment,
    # Snapshots are items in the metrics table: the endpoints group names it.
    Need.HISTORY: None,
    # SageMaker endpoints are named per request, within the IAM prefix: nothing to set.
    Need.PROMOTION: None,
    # SageMaker endpoints are named per request: nothing to set.
    Need.CATALOG: None,
}


def route_environment(route: Route) -> type[LambdaEnvironment]:
    """The environment model of the route's function: the groups of the route's needs."""
    groups = [NEED_ENVIRONMENTS[need] for need in sorted(route.needs)]
    # Once each: two needs may ask for the same group.
    bases = tuple(dict.fromkeys(g for g in groups if g is not None)) or (LambdaEnvironment,)
    name = f"{route.name.capitalize()}Environment"
    return type(name, bases, {"__module__": __name__, "__doc__": f"The {route.name} function's."})


def api_handler(app: Api) -> Callable[[dict, LambdaContext], dict]:
    """The Lambda entry point of an API route: logs, metrics, then the shared request path."""

    @logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
    @metrics.log_metrics
    def lambda_handler(event: dict, context: LambdaContext) -> dict:
        return handle(app, event, context)

    return lambda_handler
