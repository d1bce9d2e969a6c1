"""Every API route behind API Gateway (proxy integration, payload format 1.0), one per function.

The function's `ROUTE` variable names its entry in the route table; its environment
model and its ports follow from that entry's needs, so a new route needs no module here.
"""

from abtest.http.resolver import build_resolver
from abtest.http.routes import route_named
from lambdas.routes import ApiEnvironment, api_handler, route_environment
from lambdas.wiring import LambdaPorts, register_snapstart_hooks

route = route_named(ApiEnvironment.load().route)
ports = LambdaPorts(route_environment(route).load())
use_case = route.use_case.from_ports(ports)
lambda_handler = api_handler(build_resolver({route.name: use_case}))
register_snapstart_hooks(ports, route.build)
