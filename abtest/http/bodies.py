"""Request and response bodies of the HTTP API (v1), as pydantic models, and their mapping:
the application's routes (invocation, conversion, stats) and what every body shares. The
history and admin routes' bodies are in `history_bodies` and `admin_bodies`, so that an
application route's function imports none of them.

Each request body maps to its use case's core request (`to_core`), each response body
is made from its use case's result (`of`): the core never sees a body. Unknown extra
fields are ignored, not rejected: the article's clients post a whole invocation
response back as a conversion.
"""

from __future__ import annotations

import json
import re
from functools import cache
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
from pydantic_core import PydanticCustomError, SchemaSerializer, core_schema

from abtest import guardrails
from abtest.config_types import NAME_PATTERN, ExperimentSettings
from abtest.events import (
    CONTEXT_KEY,
    MAX_CONTEXT_KEYS,
    MAX_CONTEXT_TEXT_LENGTH,
    MAX_CONTINUOUS_REWARD,
)
from abtest.records import AssignmentKind, Endpoint
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


# What `InvocationRequest.plain_core` takes: the fields whose checks it repeats.
_PLAIN_INVOCATION_KEYS = frozenset({"endpoint_name", "data", "user_id"})
_MAX_NAME_LENGTH = 63
# fullmatch: `$` then ends the text, as in pydantic's (Rust) regex, not before a last newline.
_NAME = re.compile(NAME_PATTERN)


def _plain_text(value: Any, max_length: int) -> bool:
    """A StrictStr of 1 to max_length characters, ASCII (the model's check of a non-ASCII
    string, lone surrogates included, is left to the model)."""
    return type(value) is str and 0 < len(value) <= max_length and value.isascii()


class InvocationRequest(RequestBody):
    model_config = example(
        endpoint_name=EXAMPLE_ENDPOINT,
        user_id=_EXAMPLE_USER,
        data={"instances": ["The battery lasted months; setup took ten minutes"]},
        context={"country": "de", "device": "mobile", "returning": True},
    )

    endpoint_name: StrictStr = Field(
        min_length=1, max_length=_MAX_NAME_LENGTH, pattern=NAME_PATTERN
    )
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

    @field_validator("data")
    @classmethod
    def _encodable(cls, value: str | dict[str, Any] | list[Any]) -> Any:
        # Text goes to the model as UTF-8, which cannot hold a lone surrogate (JSON's
        # "\ud800"): an HTTP or SageMaker model's call failed on it (a 500) after the user's
        # assignment was stored. An object or list is sent as ASCII JSON, which escapes one.
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text: it holds a lone surrogate") from None
        return value

    @classmethod
    def plain_core(cls, value: dict[str, Any]) -> Invocation | None:
        """`model_validate(value).to_core()` for the commonest body, checked here as the
        model checks it: `endpoint_name`, `data` as ASCII text and maybe `user_id` as ASCII
        text or null, nothing else. None for any other body (the model validates it, and
        names what is wrong): every invocation would otherwise pay for a model instance."""
        if not value.keys() <= _PLAIN_INVOCATION_KEYS:
            return None
        name = value.get("endpoint_name")
        data = value.get("data")
        user_id = value.get("user_id")
        if (
            type(name) is str
            and len(name) <= _MAX_NAME_LENGTH
            and _NAME.fullmatch(name) is not None
            and type(data) is str
            and data.isascii()
            and (user_id is None or _plain_text(user_id, MAX_ID_LENGTH))
        ):
            # In field order (keywords cost twice as much): endpoint_name, data, content_type,
            # user_id.
            return Invocation(name, data, _DEFAULT_CONTENT_TYPE, user_id)
        return None

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


# What a body without `content_type` is given (the model's default).
_DEFAULT_CONTENT_TYPE = InvocationRequest.model_fields["content_type"].default


class ConversionRequest(RequestBody):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT, user_id=_EXAMPLE_USER, reward=1.0)

    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    user_id: StrictStr = Field(min_length=1, max_length=MAX_ID_LENGTH)
    inference_id: StrictStr | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=_HEADER_SAFE
    )
    reward: float = Field(
        default=1.0,
        ge=-MAX_CONTINUOUS_REWARD,
        le=MAX_CONTINUOUS_REWARD,
        allow_inf_nan=False,
        description="The conversion's reward: in [0, 1] on an endpoint whose reward is "
        '"binary" (the default), any finite number (such as revenue) on a "continuous" one',
    )

    @field_validator("reward", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        # Lax float parsing would take "1" or true; a reward must be a JSON number. Its
        # range depends on the endpoint's reward kind: the use case checks that.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
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


class StatsRequest(RequestBody):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT)

    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)

    def to_core(self) -> str:
        return self.endpoint_name


class InvocationResponse(Body):
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
        return cls(**_invocation_fields(result))

    @classmethod
    def json_of(cls, result: InvocationResult) -> bytes:
        """`of(result).model_dump_json()`, without building the model: the answer of every
        invocation, so its validation (the result is typed already) is not paid for twice.
        The same field serializers (`_fields_serializer`), so the same bytes."""
        return _invocation_serializer().to_json(_invocation_fields(result))


def _invocation_fields(result: InvocationResult) -> dict[str, Any]:
    """The response's fields, as validating them would leave them (a float propensity)."""
    propensity, assignment = result.propensity, result.assignment
    return {
        "endpoint_name": result.endpoint_name,
        "user_id": result.user_id,
        "inference_id": result.inference_id,
        "strategy": result.strategy,
        "target_variant": result.target_variant,
        "endpoint_variant": result.endpoint_variant,
        # An enum, as the model holds it.
        "assignment": assignment
        if type(assignment) is AssignmentKind
        else AssignmentKind(assignment),
        "propensity": propensity if propensity is None else float(propensity),
        "predictions": result.predictions,
    }


def _fields_serializer(model: type[BaseModel]) -> SchemaSerializer:
    """A serializer of a dict of `model`'s fields, in its order, with each field's own core
    schema and the model's config: what `model_dump_json` writes for them."""
    schema = model.__pydantic_core_schema__
    assert schema["type"] == "model" and schema["schema"]["type"] == "model-fields"
    fields = schema["schema"]["fields"]
    typed = core_schema.typed_dict_schema(
        {name: core_schema.typed_dict_field(field["schema"]) for name, field in fields.items()}
    )
    return SchemaSerializer(typed, schema.get("config"))


@cache
def _invocation_serializer() -> SchemaSerializer:
    return _fields_serializer(InvocationResponse)


class ConversionResponse(Body):
    endpoint_name: str
    user_id: str
    inference_id: str
    endpoint_variant: str
    strategy: str
    reward: float
    duplicate: bool
    late: bool = Field(
        description="Later than the endpoint's attribution window after the user's "
        "assignment: logged and counted as late, not as a conversion"
    )

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
            late=result.late,
        )


class VariantMetricsBody(Body):
    endpoint_name: str
    variant_name: str
    initial_variant_weight: float
    users: int = Field(description="Users newly assigned to the variant (each assignment once)")
    converted_users: int = Field(
        description="Assigned users whose first conversion came within the attribution window"
    )
    invocation_count: int = Field(description="Invocations the strategy routed to the variant")
    conversion_count: int = Field(
        description="Conversions within the attribution window (every one, not only the first)"
    )
    reward_sum: float = Field(description="The sum of those conversions' rewards")
    late_conversions: int = Field(
        description="Conversions later than the attribution window: logged, not counted"
    )
    model_calls: int = Field(
        description="Model calls logged with their latency and outcome (manual ones included)"
    )
    model_errors: int = Field(description="Of those, the calls that failed (answered 502)")
    error_rate: float | None = Field(
        description="model_errors / model_calls; null before any call was logged"
    )
    latency_ms: dict[str, float | None] = Field(
        description="p50, p95, p99 of the calls' latency: the upper bound of the bucket that "
        "holds each (buckets 1, 2, 5, 10, 20, 50 ... 50000 ms, so within a factor 2 to 2.5); "
        "null without calls or beyond 50000 ms"
    )
    demoted: str | None = Field(
        None,
        description="Why a guardrail demoted the variant (allocation 0, never the winner), "
        "null if it did not",
    )


class StatsResponse(Body):
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
    settings: ExperimentSettings = Field(description="What the experiment measures")
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
            settings=endpoint.settings,
            variant_metrics=variant_bodies(endpoint, result.demoted),
            allocation=result.allocation,
            decision=result.decision,
        )


def variant_bodies(endpoint: Endpoint, demoted: dict[str, str]) -> list[VariantMetricsBody]:
    return [
        VariantMetricsBody(
            endpoint_name=endpoint.endpoint_name,
            variant_name=v.variant_name,
            initial_variant_weight=v.initial_variant_weight,
            model_calls=guardrails.model_calls(v.counts),
            error_rate=guardrails.error_rate(v.counts),
            latency_ms={
                f"p{round(q * 100)}": guardrails.latency_quantile(v.counts, q)
                for q in guardrails.QUANTILES
            },
            demoted=demoted.get(v.variant_name),
            **{
                name: getattr(v.counts, name)
                for name in VariantMetricsBody.model_fields
                if hasattr(v.counts, name)
            },
        )
        for v in endpoint.variants
    ]


class ErrorResponse(Body):
    error: str
    message: str
    details: list[dict[str, Any]] = []
