"""POST /conversion behind API Gateway (proxy integration, payload format 1.0)."""

from abtest.http.resolver import build_resolver
from abtest.usecases.convert import Convert
from lambdas.wiring import (
    AssignmentsEnvironment,
    EndpointCacheEnvironment,
    EndpointsEnvironment,
    EventsEnvironment,
    LambdaPorts,
    api_handler,
)


class Environment(
    EndpointsEnvironment, EndpointCacheEnvironment, AssignmentsEnvironment, EventsEnvironment
):
    """What the conversion function reads (the API stack sets it from the route's needs)."""


ports = LambdaPorts(Environment.load())
convert = Convert.from_ports(ports)
lambda_handler = api_handler(build_resolver({"conversion": convert}))
