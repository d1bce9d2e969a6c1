"""The Lambda adapter of the HTTP API: an API Gateway proxy event (payload format 1.0) in,
its proxy response out, through the same request path as the embedded server
(`abtest.http.api`): one parser, one validator, one error shape."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from abtest.errors import BadRequestError
from abtest.http.api import Answer, Api


def build_resolver(use_cases: Mapping[str, Callable[[Any], Any]]) -> Api:
    """The routes of each use case, by route name (a Lambda function serves one)."""
    return Api(use_cases)


def handle(app: Api, event: dict, context: Any) -> dict:
    """Answer one proxy event with a JSON proxy response, whatever the body."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded") and body:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            answer = Answer.error(BadRequestError.field("body", "must be UTF-8 encoded JSON"))
            return _proxy_response(answer)
    method, path = event.get("httpMethod") or "", event.get("path") or ""
    return _proxy_response(app.answer(method, path, _content_type(event), body, _principal(event)))


def _principal(event: dict) -> str | None:
    """The IAM principal API Gateway verified the SigV4 signature of (AWS_IAM routes), or
    None: an API key or no authorizer names nobody, so admin routes refuse the request."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    arn = identity.get("userArn")
    return arn if isinstance(arn, str) and arn else None


def _content_type(event: dict) -> str | None:
    for headers in (event.get("headers"), event.get("multiValueHeaders")):
        for name, value in (headers or {}).items():
            if name.lower() == "content-type":
                return value if isinstance(value, str) else ",".join(value)
    return None


def _proxy_response(answer: Answer) -> dict:
    return {
        "statusCode": answer.status,
        "headers": {"Content-Type": "application/json", **dict(answer.headers)},
        "body": answer.body.decode(),
        "isBase64Encoded": False,
    }
