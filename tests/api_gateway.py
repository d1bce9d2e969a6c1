"""The one API Gateway event every test sends, and the Lambda context that goes with it.

`api_gateway_event.json` is an event as API Gateway hands it to a function: an HTTP API,
payload format 1.0 (the format the stacks configure), a SigV4-signed POST, with ids and
secrets replaced. Tests change only what a caller controls (path, method, body), so the
handlers and the resolver see every other field as they would on AWS.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

RECORDED: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "api_gateway_event.json").read_text()
)
REGION = "us-east-1"


def api_event(path: str, body: object, method: str = "POST") -> dict[str, Any]:
    """The recorded event sent to `method path` with `body` (a str as is, else as JSON)."""
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    event = copy.deepcopy(RECORDED)
    length = str(len((text or "").encode()))
    event.update(resource=path, path=path, httpMethod=method, body=text)
    event["headers"]["Content-Length"] = length
    event["multiValueHeaders"]["Content-Length"] = [length]
    context = event["requestContext"]
    context.update(httpMethod=method, path=path, resourcePath=path, resourceId=f"{method} {path}")
    return event


class Context:
    """The Lambda context the handlers' logger and metrics read."""

    function_name = "abtest-test"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:abtest-test"
    memory_limit_in_mb = 256
    aws_request_id = "test-request"
    log_group_name = "/aws/lambda/abtest-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def call(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Status and decoded body of `handler.lambda_handler(event, context)`."""
    response = handler.lambda_handler(event, Context())
    return response["statusCode"], json.loads(response["body"])
