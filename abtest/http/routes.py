"""The HTTP routes, declared once: the request path, the OpenAPI document, the Lambda handler,
the CDK API stack and the tests all read this.

Adding a route takes one entry here, its bodies (a module beside this one, such as
`abtest/http/history_bodies.py`, built on `abtest/http/bodies.py`) and its use case
(`abtest/usecases/`); the request path, the embedded server, the API Gateway route, the
function (`lambdas/api.py`), its environment and its permissions follow from the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pkgutil import resolve_name
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

# Where each route's bodies and use case are: imported when a route is first served (or
# documented), so a function imports its own route's modules only, and the CDK stacks,
# which read names and needs, import none.
_INVOCATION = "abtest.http.invocation_bodies"
_CONVERSION = "abtest.http.conversion_bodies"
_STATS = "abtest.http.stats_bodies"
_HISTORY = "abtest.http.history_bodies"
_ADMIN = "abtest.http.admin_bodies"


class Need(StrEnum):
    """What a route's function is given; the API stack maps each to environment and grants."""

    ENDPOINTS = "endpoints"  # read endpoint records (the metrics table)
    ENDPOINT_CACHE = "endpoint_cache"  # ... and keep them for a few seconds
    ASSIGNMENTS = "assignments"  # read and write assignments and conversion markers
    EVENTS = "events"  # append to the event log (Firehose, its dead-letter queue)
    MODELS = "models"  # call the model variants (SageMaker endpoints)
    LIFECYCLE = "lifecycle"  # change endpoint lifecycles and append to their audit logs
    LISTING = "listing"  # list every endpoint record (a scan of the metrics table)
    HISTORY = "history"  # read the endpoints' history (items in the metrics table)
    PROMOTION = "promotion"  # set a SageMaker endpoint's production-variant weights (conclude)
    CATALOG = "catalog"  # describe the model endpoints (SageMaker DescribeEndpoint)


@dataclass(frozen=True, slots=True)
class Route:
    """`POST /<name>` (`POST /admin/<name>` for an admin route): `request` is mapped to the
    use case's input, its result to `response`. An admin route's request is also given the
    caller (`to_core(actor)`), and the caller must be authenticated: always IAM on AWS, the
    bearer token on the embedded server whenever it listens beyond this machine."""

    name: str  # the path, and the function's name
    summary: str
    answer: str  # what a 200 carries, for the OpenAPI document
    # "module:Class": the request and response bodies, and the use case (a class with
    # `from_ports(ports)`, whose instances are called per request); see the properties.
    request_at: str
    response_at: str
    use_case_at: str
    needs: frozenset[Need]
    admin: bool = False

    @property
    def request(self) -> type[BaseModel]:
        return _resolved(self.request_at)

    @property
    def response(self) -> type[BaseModel]:
        return _resolved(self.response_at)

    @property
    def use_case(self) -> Any:
        return _resolved(self.use_case_at)

    @property
    def path(self) -> str:
        return f"/admin/{self.name}" if self.admin else f"/{self.name}"

    @property
    def function_name(self) -> str:
        """The short name of the route's Lambda function (`abtest-<it>-<stage>`)."""
        return f"admin-{self.name}" if self.admin else self.name

    def build(self) -> None:
        """Build the route's validator and serializer now. The bodies defer that to their
        first use, so a function builds its own route's only; SnapStart's before-snapshot
        hook calls this, so that no restored environment builds them again."""
        for body in (self.request, self.response):
            body.model_rebuild()


ROUTES: tuple[Route, ...] = (
    Route(
        name="invocation",
        summary="Invoke the user's model variant",
        answer="The variant's predictions and assignment",
        request_at=f"{_INVOCATION}:InvocationRequest",
        response_at=f"{_INVOCATION}:InvocationResponse",
        use_case_at="abtest.usecases.invoke:Invoke",
        needs=frozenset(
            {Need.ENDPOINTS, Need.ENDPOINT_CACHE, Need.ASSIGNMENTS, Need.EVENTS, Need.MODELS}
        ),
    ),
    Route(
        name="conversion",
        summary="Reward the user's variant",
        answer="The credited variant; duplicate on repeat",
        request_at=f"{_CONVERSION}:ConversionRequest",
        response_at=f"{_CONVERSION}:ConversionResponse",
        use_case_at="abtest.usecases.convert:Convert",
        needs=frozenset({Need.ENDPOINTS, Need.ENDPOINT_CACHE, Need.ASSIGNMENTS, Need.EVENTS}),
    ),
    Route(
        name="stats",
        summary="Counters, allocation and decision",
        answer="Per-variant counters, allocation, decision",
        request_at=f"{_STATS}:StatsRequest",
        response_at=f"{_STATS}:StatsResponse",
        use_case_at="abtest.usecases.stats:Stats",
        needs=frozenset({Need.ENDPOINTS}),
    ),
    Route(
        name="history",
        summary="Snapshots of the experiment over time",
        answer="A snapshot per aggregation, oldest first",
        request_at=f"{_HISTORY}:HistoryRequest",
        response_at=f"{_HISTORY}:HistoryResponse",
        use_case_at="abtest.usecases.history:ShowHistory",
        needs=frozenset({Need.ENDPOINTS, Need.HISTORY}),
    ),
)
ROUTE_NAMES = tuple(route.name for route in ROUTES)

_CHANGE = frozenset({Need.ENDPOINTS, Need.ENDPOINT_CACHE, Need.LIFECYCLE})
# The operators' routes: the experiment's lifecycle, read and changed.
ADMIN_ROUTES: tuple[Route, ...] = (
    Route(
        name="list",
        summary="List the registered endpoints",
        answer="Each endpoint's state, strategy and variants",
        request_at=f"{_ADMIN}:ListRequest",
        response_at=f"{_ADMIN}:EndpointListResponse",
        use_case_at="abtest.usecases.admin:ListEndpoints",
        needs=frozenset({Need.ENDPOINTS, Need.LISTING}),
        admin=True,
    ),
    Route(
        name="show",
        summary="Show an endpoint: config, state, variants, audit log",
        answer="The endpoint",
        request_at=f"{_ADMIN}:EndpointRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:ShowEndpoint",
        needs=frozenset({Need.ENDPOINTS}),
        admin=True,
    ),
    Route(
        name="pause",
        summary="Pause: new users get the champion, existing ones keep their variant",
        answer="The paused endpoint",
        request_at=f"{_ADMIN}:PauseRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:ChangeLifecycle",
        needs=_CHANGE,
        admin=True,
    ),
    Route(
        name="resume",
        summary="Resume a paused endpoint",
        answer="The running endpoint",
        request_at=f"{_ADMIN}:ResumeRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:ChangeLifecycle",
        needs=_CHANGE,
        admin=True,
    ),
    Route(
        name="conclude",
        summary="Conclude: the winner (named, or the decision's) serves every user",
        answer="The concluded endpoint",
        request_at=f"{_ADMIN}:ConcludeRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:ChangeLifecycle",
        needs=_CHANGE | {Need.PROMOTION},
        admin=True,
    ),
    Route(
        name="retire-variant",
        summary="Retire a variant: its users are reassigned on their next request",
        answer="The endpoint, the variant retired",
        request_at=f"{_ADMIN}:RetireVariantRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:ChangeLifecycle",
        needs=_CHANGE,
        admin=True,
    ),
    Route(
        name="reinstate",
        summary="Reinstate a variant a guardrail demoted: it serves again",
        answer="The endpoint, the variant reinstated",
        request_at=f"{_ADMIN}:ReinstateRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:ChangeLifecycle",
        needs=_CHANGE,
        admin=True,
    ),
)
# Variants over time: a challenger joins, WeightedSampling's weights are set by hand.
ADMIN_ROUTES += (
    Route(
        name="add-variant",
        summary="Add a challenger: it warms up alone, the others keep their counters",
        answer="The endpoint, the variant added",
        request_at=f"{_ADMIN}:AddVariantRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:AddVariant",
        needs=_CHANGE | {Need.CATALOG},
        admin=True,
    ),
    Route(
        name="weights",
        summary="Set WeightedSampling's weights by hand",
        answer="The endpoint, its new allocation",
        request_at=f"{_ADMIN}:WeightsRequest",
        response_at=f"{_ADMIN}:EndpointResponse",
        use_case_at="abtest.usecases.admin:ChangeLifecycle",
        needs=_CHANGE,
        admin=True,
    ),
)
ADMIN_ROUTE_NAMES = tuple(route.name for route in ADMIN_ROUTES)
ALL_ROUTES = ROUTES + ADMIN_ROUTES


def route_named(name: str) -> Route:
    for route in ALL_ROUTES:
        if route.name == name:
            return route
    names = ", ".join(route.name for route in ALL_ROUTES)
    raise ValueError(f"unknown route {name!r}; choose from {names}")


@cache
def _resolved(where: str) -> Any:
    """The class at "module:Class", its module imported the first time it is asked for."""
    return resolve_name(where)
