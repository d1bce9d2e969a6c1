"""Request and response bodies of the HTTP API (v1), as pydantic models, and their mapping.

Each request body maps to its use case's core request (`to_core`), each response body
is made from its use case's result (`of`): the core never sees a body. Unknown extra
fields are ignored, not rejected: the article's clients post a whole invocation
response back as a conversion.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic_core import PydanticCustomError

from abtest.config_types import NAME_PATTERN
from abtest.events import CONTEXT_KEY, MAX_CONTEXT_KEYS, MAX_CONTEXT_TEXT_LENGTH
from abtest.records import AssignmentKind
from abtest.usecases.convert import Conversion, ConversionResult
from abtest.usecases.invoke import Invocation, InvocationResult
from abtest.usecases.stats import StatsResult

MAX_ID_LENGTH = 256
# Both travel as HTTP headers to the model (SageMaker allows only printable ASCII in them).
HEADER_SAFE_PATTERN = r"^[\x21-\x7e][\x20-\x7e]*$"
# In the OpenAPI document; the validator below gives the readable message.
_HEADER_SAFE: dict[str, Any] = {"pattern": HEADER_SAFE_PATTERN}
# The documents' examples are calls to the demo endpoint (`abtest demo`, abtest/demo/reviews.toml)
# that work as they are: the docs page's "Try it out" sends them unchanged.
EXAMPLE_ENDPOINT = "reviews-helpfulness"
_EXAMPLE_USER = "docs-user-1"


def _example(**body: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [body]})


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


def _printable_ascii(value: str | None) -> str | None:
    if value is not None and not re.match(HEADER_SAFE_PATTERN, value):
        raise ValueError("must be printable ASCII, not starting with a space")
    return value


ContextText = Annotated[StrictStr, Field(max_length=MAX_CONTEXT_TEXT_LENGTH)]


def _invalid_context(field: str, message: str) -> PydanticCustomError:
    # `field` names the key (context.age): the 400's field, not just "context".
    return PydanticCustomError("invalid_context", "{message}", {"field": field, "message": message})


def _flat_context(value: Any) -> Any:
    """A flat object of at most MAX_CONTEXT_KEYS names to strings, numbers or booleans."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid_context("context", "must be an object of names to values")
    if len(value) > MAX_CONTEXT_KEYS:
        raise _invalid_context(
            "context", f"has {len(value)} keys; at most {MAX_CONTEXT_KEYS} are allowed"
        )
    for key, item in value.items():
        if not re.fullmatch(CONTEXT_KEY, key):
            raise _invalid_context(
                f"context.{key[:64]}",
                "a key must be 1 to 64 letters, digits, '_' or '-'",
            )
        if isinstance(item, str):
            if len(item) > MAX_CONTEXT_TEXT_LENGTH:
                raise _invalid_context(
                    f"context.{key}", f"longer than {MAX_CONTEXT_TEXT_LENGTH} characters"
                )
        elif not isinstance(item, bool | int | float) or (
            isinstance(item, float) and item != item  # NaN cannot be logged as JSON
        ):
            raise _invalid_context(
                f"context.{key}", "must be a string, a number or a boolean (the object is flat)"
            )
    return value


class InvocationRequest(_Request):
    model_config = _example(
        endpoint_name=EXAMPLE_ENDPOINT,
        user_id=_EXAMPLE_USER,
        data={"instances": ["The battery lasted months; setup took ten minutes"]},
        context={"country": "de", "device": "mobile", "returning": True},
    )

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
    context: dict[str, ContextText | StrictBool | StrictInt | StrictFloat] | None = Field(
        default=None,
        description=(
            f"Optional request context, logged with the invocation (never the payload) for "
            f"off-policy evaluation (`abtest evaluate --by KEY`): a flat object of at most "
            f"{MAX_CONTEXT_KEYS} keys (1 to 64 letters, digits, '_' or '-') to strings (at "
            f"most {MAX_CONTEXT_TEXT_LENGTH} characters), numbers or booleans."
        ),
        json_schema_extra={
            "maxProperties": MAX_CONTEXT_KEYS,
            "propertyNames": {"pattern": f"^{CONTEXT_KEY}$"},
        },
    )

    _header_safe = field_validator("content_type", "inference_id")(_printable_ascii)
    _context = field_validator("context", mode="before")(_flat_context)

    def to_core(self) -> Invocation:
        return Invocation(
            endpoint_name=self.endpoint_name,
            data=self.data if isinstance(self.data, str) else json.dumps(self.data),
            content_type=self.content_type,
            user_id=self.user_id,
            inference_id=self.inference_id,
            endpoint_variant=self.endpoint_variant,
            context=self.context,
        )


class ConversionRequest(_Request):
    model_config = _example(endpoint_name=EXAMPLE_ENDPOINT, user_id=_EXAMPLE_USER, reward=1.0)

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

    def to_core(self) -> Conversion:
        return Conversion(
            endpoint_name=self.endpoint_name,
            user_id=self.user_id,
            inference_id=self.inference_id,
            reward=float(self.reward),
        )


class StatsRequest(_Request):
    model_config = _example(endpoint_name=EXAMPLE_ENDPOINT)

    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)

    def to_core(self) -> str:
        return self.endpoint_name


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

    @classmethod
    def of(cls, result: InvocationResult) -> InvocationResponse:
        return cls(
            endpoint_name=result.endpoint_name,
            user_id=result.user_id,
            inference_id=result.inference_id,
            strategy=result.strategy,
            target_variant=result.target_variant,
            endpoint_variant=result.endpoint_variant,
            assignment=result.assignment,
            propensity=result.propensity,
            predictions=result.predictions,
        )


class ConversionResponse(BaseModel):
    endpoint_name: str
    user_id: str
    inference_id: str
    endpoint_variant: str
    strategy: str
    reward: float
    duplicate: bool

    @classmethod
    def of(cls, result: ConversionResult) -> ConversionResponse:
        return cls(
            endpoint_name=result.endpoint_name,
            user_id=result.user_id,
            inference_id=result.inference_id,
            endpoint_variant=result.endpoint_variant,
            strategy=result.strategy,
            reward=result.reward,
            duplicate=result.duplicate,
        )


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
    epsilon: float | None = Field(
        description="EpsilonGreedy's epsilon; null for a strategy without one "
        "(kept for the article's clients: strategy_params has every parameter)"
    )
    strategy_params: dict[str, float | int] = Field(
        description="The strategy's parameters by name, every declared one"
    )
    warmup: int
    status: str
    variant_metrics: list[VariantMetricsBody]
    allocation: dict[str, float]
    decision: dict[str, Any]

    @classmethod
    def of(cls, result: StatsResult) -> StatsResponse:
        endpoint = result.endpoint
        return cls(
            endpoint_name=endpoint.endpoint_name,
            strategy=endpoint.strategy,
            epsilon=endpoint.strategy_params.get("epsilon"),
            strategy_params=endpoint.strategy_params,
            warmup=endpoint.warmup,
            status=endpoint.status,
            variant_metrics=[
                VariantMetricsBody(
                    endpoint_name=endpoint.endpoint_name,
                    variant_name=m.variant_name,
                    initial_variant_weight=m.initial_variant_weight,
                    invocation_count=m.invocation_count,
                    conversion_count=m.conversion_count,
                    reward_sum=m.reward_sum,
                )
                for m in endpoint.variant_metrics
            ],
            allocation=result.allocation,
            decision=result.decision,
        )


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: list[dict[str, Any]] = []
