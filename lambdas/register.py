"""Registers SageMaker endpoints as they come into service, and retires them as they go.

Triggered by EventBridge "SageMaker Endpoint State Change" events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from abtest.errors import ConfigError, NotFoundError
from abtest.usecases.register import Register
from lambdas.wiring import (
    EndpointsEnvironment,
    LambdaPorts,
    logger,
    metrics,
    register_snapstart_hooks,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


class RegisterEnvironment(EndpointsEnvironment):
    """What the register function reads (the API stack sets it)."""

    # Required and never empty: an empty prefix would register every endpoint in the account.
    endpoint_prefix: str


env = RegisterEnvironment.load()
ports = LambdaPorts(env)
registration = Register.from_ports(ports)
register_snapstart_hooks(ports)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    detail = event.get("detail") or {}
    name = detail.get("EndpointName", "")
    status = detail.get("EndpointStatus", "")
    if not name or not name.startswith(env.endpoint_prefix):
        return {"endpoint_name": name, "action": "ignored", "reason": "name outside the prefix"}
    if status == "IN_SERVICE":
        try:
            endpoint = registration.register(name)
        except (ConfigError, ValueError, NotFoundError) as error:
            # A bad ab-testing:* tag: say so loudly; never register with guessed defaults.
            logger.error("endpoint %s not registered: %s", name, error)
            return {"endpoint_name": name, "action": "rejected", "reason": str(error)}
        return {
            "endpoint_name": name,
            "action": "registered",
            "variants": list(endpoint.variant_names),
        }
    if status == "DELETING":
        registration.deregister(name)
        return {"endpoint_name": name, "action": "deregistered"}
    return {"endpoint_name": name, "action": "ignored", "reason": f"status {status}"}
