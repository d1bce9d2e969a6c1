"""What every HTTP body shares: the base classes, the examples' endpoint, the header-safe
text rule and the error shape.

Each route's bodies are in a module of their own (`invocation_bodies`, `conversion_bodies`,
`stats_bodies`, `history_bodies`, `admin_bodies`), imported when the route is first served:
a function serves one route and compiles that route's bodies only (`lambdas/api.py`).

Each request body maps to its use case's core request (`to_core`), each response body
is made from its use case's result (`of`): the core never sees a body. Unknown extra
fields are ignored, not rejected: the article's clients post a whole invocation
response back as a conversion.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

MAX_ID_LENGTH = 256
# Both travel as HTTP headers to the model (SageMaker allows only printable ASCII in them).
HEADER_SAFE_PATTERN = r"^[\x21-\x7e][\x20-\x7e]*$"
# In the OpenAPI document; the validator below gives the readable message.
HEADER_SAFE: dict[str, Any] = {"pattern": HEADER_SAFE_PATTERN}
# The documents' examples are calls to the demo endpoint (`abtest demo`, abtest/demo/reviews.toml)
# that work as they are: the docs page's "Try it out" sends them unchanged.
EXAMPLE_ENDPOINT = "reviews-helpfulness"
EXAMPLE_USER = "docs-user-1"


def example(**body: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [body]})


class Body(BaseModel):
    """Every body. Its validator and serializer are built when first used, not at import:
    a function serves one route, so it builds that route's bodies only (building every
    body here at import took 7 of this module's 18 ms, measured with it compiled)."""

    model_config = ConfigDict(defer_build=True)


class RequestBody(Body):
    """A request: unknown fields ignored (see the module's docstring)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


def printable_ascii(value: str | None) -> str | None:
    if value is not None and not re.match(HEADER_SAFE_PATTERN, value):
        raise ValueError("must be printable ASCII, not starting with a space")
    return value


class ErrorResponse(Body):
    error: str
    message: str
    details: list[dict[str, Any]] = []
