"""The one request path of the HTTP API: routing, body checks, validation, the use case, errors.

Both entry points hand it the parts of a request that matter (method, path, content
type, body) and send back the `Answer`: the Lambda adapter (`abtest.http.resolver`)
from an API Gateway proxy event, the embedded server straight from its ASGI request.
So there is one parser, one validator and one error shape, and no framework between a
request and its use case (the OpenAPI document is `abtest.http.openapi`'s).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from abtest.errors import (
    AbtestError,
    BadRequestError,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from abtest.http.routes import Route, route_named

logger = logging.getLogger("abtest")

# API Gateway -> Lambda synchronous payloads are limited to 6 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024
# Deeper JSON would exhaust the recursion limit somewhere between parsing and the response;
# no model payload needs it.
MAX_JSON_DEPTH = 128
JSON = "application/json"
# What a body that is JSON but not an object is told (pydantic's words, as before).
NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from"


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer: its status, its body, and any header besides Content-Type."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def error(cls, error: AbtestError, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        return cls(error.status, json.dumps(error.body()).encode(), headers)


class Api:
    """The routes of `use_cases` (route name -> use case; a Lambda function serves one)."""

    def __init__(self, use_cases: Mapping[str, Callable[[Any], Any]]) -> None:
        self._served: dict[str, tuple[Route, Callable[[Any], Any], Callable[[Any], bytes]]] = {
            route_named(name).path: (route_named(name), use_case, _serializer(route_named(name)))
            for name, use_case in use_cases.items()
        }
        # The bodies that check their commonest form without the model (`validated`).
        self._plain: dict[str, Callable[[dict[str, Any]], Any]] = {
            route.name: route.request.plain_core
            for route, _, _ in self._served.values()
            if hasattr(route.request, "plain_core")
        }

    @property
    def route_names(self) -> tuple[str, ...]:
        return tuple(route.name for route, _, _ in self._served.values())

    def answer(
        self,
        method: str,
        path: str,
        content_type: str | None,
        body: str | None,
        actor: str | None = None,
    ) -> Answer:
        """Answer one request, whatever it holds: anything raised is a logged JSON 500.

        `actor` is the authenticated caller, for the audit log; an admin route refuses a
        request without one (403)."""
        try:
            return self._answer(method.upper(), path, content_type, body or "", actor)
        except AbtestError as error:
            if error.status >= 500:
                logger.error("%s: %s", error.code, error.message)
            return Answer.error(error)
        except Exception:  # a bug, not bad input: still a JSON answer, and logged
            logger.exception("%s %s failed", method, path)
            return Answer.error(AbtestError("internal error; see the log"))

    def _answer(
        self, method: str, path: str, content_type: str | None, body: str, actor: str | None
    ) -> Answer:
        # Size and media type come before the route, as API Gateway would refuse them.
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        if content_type is not None and content_type != JSON:
            media_type = content_type.partition(";")[0].strip().lower()
            if media_type != JSON:
                message = f"Content-Type {content_type[:100]!r} is not supported; send {JSON}"
                raise UnsupportedMediaTypeError(
                    f"body: {message}", details=[{"field": "body", "message": message}]
                )
        # A trailing slash names the route too; a doubled leading one does not.
        served = self._served.get(path.rstrip("/")) if path != "/" else None
        if served is None:
            routes = ", ".join(f"POST {p}" for p in sorted(self._served))
            raise NotFoundError(f"no route {method} {path}; routes: {routes}")
        if method != "POST":
            return Answer.error(
                MethodNotAllowedError(f"{method} {path}: use POST"), (("Allow", "POST"),)
            )
        route, use_case, serialized = served
        if route.admin and actor is None:
            raise ForbiddenError(f"{path} is an admin route: only an authenticated caller")
        value = _object_body(body)
        plain_core = self._plain.get(route.name)
        core = plain_core(value) if plain_core is not None else None
        if core is None:
            request = validated(route, value)
            core = request.to_core(actor) if route.admin else request.to_core()
        return Answer(200, serialized(use_case(core)))


def _serializer(route: Route) -> Callable[[Any], bytes]:
    """The JSON of the route's response body made from its use case's result: the body's
    own `json_of` where it has one (the same bytes, made faster), else by building it."""
    json_of = getattr(route.response, "json_of", None)
    if json_of is not None:
        return json_of
    return lambda result: route.response.of(result).model_dump_json().encode()


def _object_body(body: str) -> dict[str, Any]:
    """The JSON object sent, or a 400: not JSON, no body, not an object."""
    value = _json_body(body)
    if value is None:  # no body, or JSON null
        raise _bad_request([{"loc": (), "msg": "Field required"}])
    if not isinstance(value, dict):
        raise _bad_request([{"loc": (), "msg": NOT_AN_OBJECT}])
    return value


def validated(route: Route, value: dict[str, Any]) -> Any:
    """The route's request body from the JSON object sent, or a 400 naming each bad field.

    A body may first try its `plain_core` (the commonest body's core request, checked
    without the model); what it leaves (None) is validated here."""
    try:
        return route.request.model_validate(value)
    except ValidationError as error:
        raise _bad_request(error.errors(include_url=False, include_input=False)) from None


class _Unusual(Exception):
    """A body the plain decoder leaves to `_checked_json`: NaN, Infinity, a huge float."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Unusual
    return value


def _unusual(text: str) -> Any:
    raise _Unusual


# One decoder for the common body, made once (json.loads with hooks makes one per call):
# anything it does not parse plainly is parsed again by `_checked_json`, which names the
# problem, so every answer to a bad body is the one it always was.
_PLAIN_JSON = json.JSONDecoder(parse_float=_finite, parse_constant=_unusual)
_SCAN = _PLAIN_JSON.scan_once


def _json_body(text: str) -> Any:
    """Strict JSON: bodies that would crash later (too deep, huge integers, NaN) are 400s."""
    if not text:
        return None
    try:
        value = _decoded(text)
    except (_Unusual, ValueError, RecursionError):
        return _checked_json(text)
    return _shallow(value)


def _decoded(text: str) -> Any:
    """`_PLAIN_JSON.decode(text)`: a body with no whitespace around its value (what clients
    send) straight from the decoder's scanner, which decode() calls after two whitespace
    matches; anything else through decode() itself."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:  # no value at the start: whitespace first, or not JSON
        return _PLAIN_JSON.decode(text)
    return value if end == len(text) else _PLAIN_JSON.decode(text)


def _checked_json(text: str) -> Any:
    """`_json_body`'s way for a body that is not plain JSON: the 400 that names why."""
    try:
        # NaN, Infinity and numbers beyond a float's range parse to a marker, so the 400 can
        # name the field that held one (`reward: NaN is not a JSON number`).
        not_finite: list[_NotFinite] = []

        def marked(text: str) -> _NotFinite:
            not_finite.append(_NotFinite(text))
            return not_finite[-1]

        def number(text: str) -> float | _NotFinite:
            value = float(text)
            return value if math.isfinite(value) else marked(text)

        value = json.loads(text, parse_constant=marked, parse_float=number)
    except json.JSONDecodeError:
        raise BadRequestError.field(
            "body", f"not JSON: send a JSON object with Content-Type: {JSON}"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError as error:  # an integer over int_max_str_digits
        message = str(error)
        if "integer string conversion" in message:
            message = f"an integer has more than {sys.get_int_max_str_digits()} digits"
        raise _invalid_body(message) from None
    _shallow(value)
    if not_finite:
        named = value.items() if isinstance(value, dict) else ()
        for name, item in named:
            if isinstance(item, _NotFinite):
                raise BadRequestError.field(name, str(item))
        raise _invalid_body(str(not_finite[0]))  # deeper in the body, as in `data`
    return value


class _NotFinite:
    """What NaN, Infinity or a number beyond a float's range parse to."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        if self.text in ("NaN", "Infinity", "-Infinity"):
            return f"{self.text} is not a JSON number"
        return f"number {self.text[:20]!r} is out of a float's range"


def _shallow(value: Any) -> Any:
    """`value`, or the 400 for a body nested deeper than MAX_JSON_DEPTH (whichever way it
    was parsed: later code recurses over it)."""
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep()
    return value


def _too_deep() -> BadRequestError:
    return _invalid_body(f"nested deeper than {MAX_JSON_DEPTH} levels")


def _deeper_than(value: Any, limit: int) -> bool:
    if limit >= 1 and type(value) is dict:  # most bodies: an object of plain values
        for child in value.values():
            if isinstance(child, dict | list):
                break
        else:
            return False
    # Iterative: recursing would hit the very limit this guards against.
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _invalid_body(message: str) -> BadRequestError:
    return _bad_request([{"loc": (), "msg": message}])


def _bad_request(errors: Iterable[Mapping[str, Any]]) -> BadRequestError:
    details = []
    for error in errors:
        # loc is (field, <union member>...): the field is what the user wrote.
        location = error.get("loc", ())
        field = location[0] if location and isinstance(location[0], str) else "body"
        # A validator that knows a deeper field (context.age) names it in its context.
        field = (error.get("ctx") or {}).get("field", field)
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        detail = {"field": field, "message": message}
        if detail not in details:
            details.append(detail)
    if not details:
        details = [{"field": "body", "message": "invalid request body"}]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return BadRequestError(summary, details=details)
