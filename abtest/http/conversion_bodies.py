"""The conversion route's bodies: a reward for the user's variant, and what was credited."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr, field_validator

from abtest.config_types import NAME_PATTERN
from abtest.events import MAX_CONTINUOUS_REWARD
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
from abtest.usecases.convert import Conversion, ConversionResult


class ConversionRequest(RequestBody):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT, user_id=EXAMPLE_USER, reward=1.0)

    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    user_id: StrictStr = Field(min_length=1, max_length=MAX_ID_LENGTH)
    inference_id: StrictStr | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=HEADER_SAFE
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
    _header_safe = field_validator("inference_id")(printable_ascii)

    def to_core(self) -> Conversion:
        return Conversion(
            endpoint_name=self.endpoint_name,
            user_id=self.user_id,
            inference_id=self.inference_id,
            reward=float(self.reward),
        )


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
