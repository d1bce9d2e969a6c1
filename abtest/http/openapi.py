"""The OpenAPI document of the routes, made from the route table and the pydantic bodies.

Powertools writes it from a resolver that only describes the routes and serves none: the
request path never builds one (`abtest.http.api` answers requests), so the document is the
one place the framework is imported, and only when the document is asked for.

It names the authorisation of the one runtime that serves it, `abtest serve`: with a token,
an HTTP bearer scheme on every route of the table (the server asks for it on all of them;
/health and the documents are no route), so Swagger UI offers "Authorize"; without one,
none. On AWS the gateway authorises as each stage's `auth` (cdk.json) says: IAM, an API
key or none, IAM on the admin routes; no document is served there, and the 401 and 403
answers below name both runtimes' refusals.
"""

from __future__ import annotations

import json
from typing import Any

from abtest.http.bodies import ErrorResponse
from abtest.http.routes import ALL_ROUTES, Route

TITLE = "abtest"
VERSION = "1.0.0"
# The security scheme of the embedded server's token: Swagger UI lists it under "Authorize".
BEARER = "token"
BEARER_DESCRIPTION = "The token the server was started with (`abtest serve --token`, ABTEST_TOKEN)"

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    for code, text in {
        400: "Bad body; `details` names the field",
        401: "No or wrong bearer token (abtest serve --token)",
        403: "An admin route called without an IAM principal (AWS)",
        404: "Unknown endpoint, or a conversion from a user with no assignment",
        409: "endpoint_variant is not a variant of the endpoint; an illegal or lost lifecycle "
        "change (the message names the state and the allowed moves)",
        413: "Body over 6 MB",
        415: "Body not sent as application/json",
        502: "The model variant failed; the message names it. Conclude on AWS: SageMaker "
        "refused the winner's weights (the promotion stays pending)",
        503: "The assignment store is unreachable (conversion and stats). Conclude on AWS: "
        "SageMaker throttled, failed or is updating (the promotion stays pending: retry)",
    }.items()
}


def _responses(ok: type, text: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": text, "content": {"application/json": {"model": ok}}}, **_ERRORS}


def _described(route: Route) -> Any:
    def serve(request: Any) -> Any:
        raise AssertionError("the OpenAPI document's resolver serves no request")

    # Powertools documents the route from these annotations.
    serve.__name__ = route.name
    serve.__annotations__ = {"request": route.request, "return": route.response}
    return serve


def openapi_json(*, token: bool = False) -> str:
    """The OpenAPI document of all routes, as `abtest serve` serves it: with `token` (the
    server has one), every route asks for it (BEARER)."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    resolver = APIGatewayRestResolver(enable_validation=True)
    security = [{BEARER: []}] if token else None
    for route in ALL_ROUTES:
        resolver.post(
            route.path,
            summary=route.summary,
            responses=_responses(route.response, route.answer),
            security=security,
        )(_described(route))
    schemes = {BEARER: HTTPBearer(description=BEARER_DESCRIPTION)} if token else None
    schema = json.loads(
        resolver.get_openapi_json_schema(title=TITLE, version=VERSION, security_schemes=schemes)
    )
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
