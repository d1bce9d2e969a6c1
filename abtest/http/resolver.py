"""The HTTP routes over the use cases, shared by the Lambda handlers and the embedded server.

Both entry points feed this resolver API Gateway proxy events (payload format
1.0): Lambda gets them from API Gateway, the embedded server builds them from
each HTTP request. So there is one request parser, one validator, one error
shape, and one OpenAPI document.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from abtest.errors import (
    AbtestError,
    BadRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from abtest.http.bodies import ErrorResponse
from abtest.http.routes import ROUTES, Route, route_named

logger = logging.getLogger("abtest")

# API Gateway -> Lambda synchronous payloads are limited to 6 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024
# Deeper JSON would exhaust the recursion limit somewhere between parsing and the response;
# no model payload needs it.
MAX_JSON_DEPTH = 128
JSON = "application/json"
TITLE = "abtest"
VERSION = "1.0.0"

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    for code, text in {
        400: "Bad body; `details` names the field",
        401: "No or wrong bearer token (abtest serve --token)",
        404: "Unknown endpoint, or a conversion from a user with no assignment",
        409: "endpoint_variant is not a variant of the endpoint",
        413: "Body over 6 MB",
        415: "Body not sent as application/json",
        502: "The model variant failed; the message names it",
        503: "The assignment store is unreachable (conversion and stats)",
    }.items()
}


def _responses(ok: type, text: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": text, "content": {"application/json": {"model": ok}}}, **_ERRORS}


def error_response(error: AbtestError, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=error.status,
        content_type="application/json",
        body=json.dumps(error.body()),
        headers=headers,
    )


class _Resolver(APIGatewayRestResolver):
    """Keeps the current event per thread.

    Powertools stores the event being resolved on the `BaseRouter` class, shared by
    every resolver in the process: fine for Lambda's one request at a time, but the
    embedded server resolves on several threads at once, and one request would read
    another's body. (Each thread still needs its own resolver: `context` is per instance.)
    """

    _local = threading.local()

    @property
    def current_event(self) -> Any:  # type: ignore[override]
        return self._local.event

    @current_event.setter
    def current_event(self, event: Any) -> None:
        self._local.event = event

    def _to_proxy_event(self, event: dict) -> Any:
        proxy = super()._to_proxy_event(event)
        self._local.event = proxy
        return proxy


def build_resolver(use_cases: Mapping[str, Callable[[Any], Any]]) -> APIGatewayRestResolver:
    """A resolver serving the route of each use case, by route name (a Lambda serves one)."""
    app = _Resolver(enable_validation=True, json_body_deserializer=_json_body)
    served = {name: route_named(name) for name in use_cases}
    for name, route in served.items():
        _add_route(app, route, use_cases[name])

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response:
        return error_response(_bad_request(error.errors()))

    @app.exception_handler(AbtestError)
    def _abtest_error(error: AbtestError) -> Response:
        if error.status >= 500:
            logger.error("%s: %s", error.code, error.message)
        return error_response(error)

    @app.not_found
    def _not_found(_: Exception) -> Response:
        path = app.current_event.path
        method = app.current_event.http_method
        # Only the route itself (the router also takes a trailing slash) is a wrong method.
        if path.rstrip("/") in {f"/{route}" for route in served}:
            error = MethodNotAllowedError(f"{method} {path}: use POST")
            return error_response(error, headers={"Allow": "POST"})
        routes = ", ".join(f"POST /{r}" for r in sorted(served))
        return error_response(NotFoundError(f"no route {method} {path}; routes: {routes}"))

    return app


def _add_route(app: APIGatewayRestResolver, route: Route, use_case: Callable[[Any], Any]) -> None:
    def serve(request: Any) -> Any:
        return route.response.of(use_case(request.to_core()))

    # Powertools validates the body and documents the route from these annotations.
    serve.__name__ = route.name
    serve.__annotations__ = {"request": route.request, "return": route.response}
    app.post(
        route.path,
        summary=route.summary,
        responses=_responses(route.response, route.answer),
    )(serve)


def _not_served(_: Any) -> Any:
    raise AssertionError("the OpenAPI document's resolver serves no request")


def openapi_json() -> str:
    """The OpenAPI document of all routes (served locally, and written for docs)."""
    resolver = build_resolver({route.name: _not_served for route in ROUTES})
    schema = json.loads(resolver.get_openapi_json_schema(title=TITLE, version=VERSION))
    # Validation errors are answered 400 with the field named, never the framework's 422.
    for operations in schema["paths"].values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)
    # An invocation's answer is what its conversion and stats calls are made of. The ids
    # are read from the document, not spelled here: the framework names the operations.
    paths = schema["paths"]
    invoked = paths.get("/invocation", {}).get("post")
    if invoked is not None:
        invoked["responses"]["200"]["links"] = {
            name: {
                "operationId": paths[path]["post"]["operationId"],
                "requestBody": {f: f"$response.body#/{f}" for f in fields},
            }
            for name, path, fields in (
                ("Conversion", "/conversion", ("endpoint_name", "user_id", "inference_id")),
                ("Stats", "/stats", ("endpoint_name",)),
            )
            if path in paths
        }
    return json.dumps(schema, indent=2)


def handle(app: APIGatewayRestResolver, event: dict, context: Any) -> dict:
    """Resolve one proxy event into a JSON answer, whatever the body.

    Bodies too big, not text or not JSON are refused before the framework parses them
    (its multipart and form parsers are not for this API and crash on some input), and
    anything still raised becomes a logged JSON 500, never an unhandled exception.
    """
    body = event.get("body") or ""
    if len(body) > MAX_BODY_BYTES:
        return _proxy_error(
            PayloadTooLargeError(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        )
    if event.get("isBase64Encoded") and body:
        try:
            text = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _proxy_error(BadRequestError.field("body", "must be UTF-8 encoded JSON"))
        event = {**event, "body": text, "isBase64Encoded": False}
    content_type = _content_type(event)
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != JSON:
            message = f"Content-Type {content_type[:100]!r} is not supported; send {JSON}"
            return _proxy_error(
                UnsupportedMediaTypeError(
                    f"body: {message}", details=[{"field": "body", "message": message}]
                )
            )
        if not content_type.startswith(JSON):  # media types are case-insensitive; the router's
            event = _with_content_type(event, JSON)  # parser compares case-sensitively
    try:
        return app.resolve(event, context)
    except Exception:  # a bug, not bad input: still a JSON answer, and logged
        logger.exception("%s %s failed", event.get("httpMethod"), event.get("path"))
        return _proxy_error(AbtestError("internal error; see the log"))


def _content_type(event: dict) -> str | None:
    for headers in (event.get("headers"), event.get("multiValueHeaders")):
        for name, value in (headers or {}).items():
            if name.lower() == "content-type":
                return value if isinstance(value, str) else ",".join(value)
    return None


def _with_content_type(event: dict, content_type: str) -> dict:
    event = dict(event)
    for key, value in (("headers", content_type), ("multiValueHeaders", [content_type])):
        if event.get(key) is not None:
            headers = {k: v for k, v in event[key].items() if k.lower() != "content-type"}
            event[key] = {**headers, "Content-Type": value}
    return event


def _json_body(text: str) -> Any:
    """Strict JSON: bodies that would crash later (too deep, huge integers, NaN) are 400s."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError:
        raise  # the router's own "not JSON" answer
    except RecursionError:
        raise _invalid_body(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # NaN, 1e999, or an integer over int_max_str_digits
        message = str(error)
        if "integer string conversion" in message:
            message = f"an integer has more than {sys.get_int_max_str_digits()} digits"
        raise _invalid_body(message) from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise _invalid_body(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]!r} is out of a float's range")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative: recursing would hit the very limit this guards against.
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _invalid_body(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "body_invalid", "loc": ("body",), "msg": message}])


def _proxy_error(error: AbtestError) -> dict:
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(error.body()),
        "isBase64Encoded": False,
    }


def _bad_request(errors: Iterable[dict[str, Any]]) -> BadRequestError:
    details = []
    for error in errors:
        # loc is ("body", field, <union member>...): the field is what the user wrote.
        location = [part for part in error.get("loc", ()) if part not in ("body", "request")]
        field = str(location[0]) if location and isinstance(location[0], str) else "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            field, message = "body", f"not JSON: send a JSON object with Content-Type: {JSON}"
        detail = {"field": field, "message": message}
        if detail not in details:
            details.append(detail)
    if not details:
        details = [{"field": "body", "message": "invalid request body"}]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return BadRequestError(summary, details=details)
