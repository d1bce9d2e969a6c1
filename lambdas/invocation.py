"""POST /invocation behind API Gateway (proxy integration, payload format 1.0)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.http.resolver import build_resolver, handle
from lambdas.wiring import logger, metrics, service_for

service = service_for("invocation")
app = build_resolver(service, routes=["invocation"])


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle(app, event, context)
