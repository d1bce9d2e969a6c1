"""The invocation route's bodies: the request (with its request context for off-policy
evaluation, and a fast path for the commonest body) and the answer's serializer."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic_core import PydanticCustomError, SchemaSerializer, core_schema

from abtest.config_types import NAME_PATTERN
from abtest.events import CONTEXT_KEY, MAX_CONTEXT_KEYS, MAX_CONTEXT_TEXT_LENGTH
from abtest.http.bodies import (
    EXAMPLE_ENDPOINT,
    EXAMPLE_USER,
    HEADER_SAFE,
    MAX_ID_LENGTH,
    Body,
    RequestBody,
    example,
    printable_ascii,
)
from abtest.records import AssignmentKind
from abtest.usecases.invoke import Invocation, InvocationResult

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
        user_id=EXAMPLE_USER,
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
        default="application/json", min_length=1, max_length=256, json_schema_extra=HEADER_SAFE
    )
    inference_id: StrictStr | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=HEADER_SAFE
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

    _header_safe = field_validator("content_type", "inference_id")(printable_ascii)
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
