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
    """Answer one proxy event with a JSON proxy response, whatever it holds: API Gateway's
    own events, or anything a direct invocation of the function passes (a field of another
    type is read as missing; a body that is not text is a 400)."""
    event = _object(event)
    body = event.get("body") or ""
    if not isinstance(body, str):
        error = BadRequestError.field("body", "must be the request's text, as API Gateway sends it")
        return _proxy_response(Answer.error(error))
    if event.get("isBase64Encoded") and body:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            answer = Answer.error(BadRequestError.field("body", "must be UTF-8 encoded JSON"))
            return _proxy_response(answer)
    method, path = _text(event.get("httpMethod")), _text(event.get("path"))
    return _proxy_response(app.answer(method, path, _content_type(event), body, _principal(event)))


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _principal(event: dict) -> str | None:
    """The IAM principal API Gateway verified the SigV4 signature of (AWS_IAM routes), or
    None: an API key or no authorizer names nobody, so admin routes refuse the request."""
    arn = _object(_object(event.get("requestContext")).get("identity")).get("userArn")
    return arn if isinstance(arn, str) and arn else None


def _content_type(event: dict) -> str | None:
    for headers in (event.get("headers"), event.get("multiValueHeaders")):
        for name, value in _object(headers).items():
            if isinstance(name, str) and name.lower() == "content-type":
                if isinstance(value, list):
                    texts = [v for v in value if isinstance(v, str)]
                    value = ",".join(texts) if texts else None
                return value if isinstance(value, str) else None
    return None


def _proxy_response(answer: Answer) -> dict:
    return {
        "statusCode": answer.status,
        "headers": {"Content-Type": "application/json", **dict(answer.headers)},
        "body": answer.body.decode(),
        "isBase64Encoded": False,
    }
