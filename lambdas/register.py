"""Registers SageMaker endpoints as they come into service, and retires them as they go.

Triggered by EventBridge "SageMaker Endpoint State Change" events.
"""

import os

from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.errors import ConfigError, NotFoundError
from lambdas.wiring import logger, metrics, service_for

service = service_for("register")
ENDPOINT_PREFIX = os.environ.get("ENDPOINT_PREFIX", "")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    detail = event.get("detail") or {}
    name = detail.get("EndpointName", "")
    status = detail.get("EndpointStatus", "")
    if not name or not name.startswith(ENDPOINT_PREFIX):
        return {"endpoint_name": name, "action": "ignored", "reason": "name outside the prefix"}
    if status == "IN_SERVICE":
        try:
            endpoint = service.register(name)
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
        service.deregister(name)
        return {"endpoint_name": name, "action": "deregistered"}
    return {"endpoint_name": name, "action": "ignored", "reason": f"status {status}"}
