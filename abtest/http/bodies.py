"""Request and response bodies of the HTTP API (v1), as pydantic models.

Unknown extra fields are ignored, not rejected: the article's clients post a
whole invocation response back as a conversion.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

# SageMaker endpoint and variant names: up to 63 characters of [a-zA-Z0-9-].
NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
MAX_ID_LENGTH = 256
# Both travel as HTTP headers to the model (SageMaker allows only printable ASCII in them).
HEADER_SAFE_PATTERN = r"^[\x21-\x7e][\x20-\x7e]*$"
# In the OpenAPI document; the validator below gives the readable message.
_HEADER_SAFE: dict[str, Any] = {"pattern": HEADER_SAFE_PATTERN}

AssignmentKind = Literal["existing", "new", "manual", "fallback"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


def _printable_ascii(value: str | None) -> str | None:
    if value is not None and not re.match(HEADER_SAFE_PATTERN, value):
        raise ValueError("must be printable ASCII, not starting with a space")
    return value


class InvocationRequest(_Request):
    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    user_id: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    data: StrictStr | dict[str, Any] | list[Any] = Field(
        description="The model payload: a string as sent to the model, or JSON that is serialized."
    )
    content_type: StrictStr = Field(
        default="application/json", min_length=1, max_length=256, json_schema_extra=_HEADER_SAFE
    )
    inference_id: StrictStr | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=_HEADER_SAFE
    )
    endpoint_variant: StrictStr | None = Field(default=None, min_length=1, max_length=63)

    _header_safe = field_validator("content_type", "inference_id")(_printable_ascii)

    def payload(self) -> str:
        return self.data if isinstance(self.data, str) else json.dumps(self.data)


class ConversionRequest(_Request):
    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    user_id: StrictStr = Field(min_length=1, max_length=MAX_ID_LENGTH)
    inference_id: StrictStr | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=_HEADER_SAFE
    )
    reward: float = Field(default=1.0, ge=0.0, le=1.0, allow_inf_nan=False)

    @field_validator("reward", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        # Lax float parsing would take "1" or true; a reward must be a JSON number.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number in [0, 1]")
        return value

    # The same rule as the invocation's, which returned this id.
    _header_safe = field_validator("inference_id")(_printable_ascii)


class StatsRequest(_Request):
    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)


class InvocationResponse(BaseModel):
    endpoint_name: str
    user_id: str
    inference_id: str
    strategy: str
    target_variant: str | None
    endpoint_variant: str
    assignment: AssignmentKind
    propensity: float | None
    predictions: Any


class ConversionResponse(BaseModel):
    endpoint_name: str
    user_id: str
    inference_id: str
    endpoint_variant: str
    strategy: str
    reward: float
    duplicate: bool


class VariantMetricsBody(BaseModel):
    endpoint_name: str
    variant_name: str
    initial_variant_weight: float
    invocation_count: int
    conversion_count: int
    reward_sum: float


class StatsResponse(BaseModel):
    endpoint_name: str
    strategy: str
    epsilon: float
    warmup: int
    status: str
    variant_metrics: list[VariantMetricsBody]
    allocation: dict[str, float]
    decision: dict[str, Any]


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: list[dict[str, Any]] = []
