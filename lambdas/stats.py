"""POST /stats behind API Gateway (proxy integration, payload format 1.0)."""

from abtest.http.resolver import build_resolver
from abtest.usecases.stats import Stats
from lambdas.wiring import EndpointsEnvironment, LambdaPorts, api_handler


class Environment(EndpointsEnvironment):
    """What the stats function reads (the API stack sets it from the route's needs)."""


ports = LambdaPorts(Environment.load())
stats = Stats.from_ports(ports)
lambda_handler = api_handler(build_resolver({"stats": stats}))
