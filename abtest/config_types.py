"""What every configuration surface shares: the annotated pydantic types of names, strategy
and strategy parameters, and the one formatter of their errors.

The surfaces (the embedded TOML file, the SageMaker endpoint tags, the CDK context and the
per-stage deployment config) each declare a pydantic model from these types, so a name, a
strategy or a parameter is checked the same way wherever it is written, and a bad value
is reported as `<key>: <reason>` wherever it comes from. The strategies and their
parameters themselves are declared in `bandit` (see `bandit.registry`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

import bandit
from bandit.epsilon_greedy import EPSILON
from bandit.planning import TIGHTEST_AT

# SageMaker endpoint and variant names: up to 63 characters of [a-zA-Z0-9-], no hyphen at
# either end.
NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
NAME_MAX_LENGTH = 63
# Error type of a reason about a key below the one a validator runs on; its context holds
# the rest of the key, which the formatter appends (`endpoint.strategy_params.epsilon`).
_NESTED_ERROR = "nested"


def _a_name(value: str) -> str:
    if len(value) > NAME_MAX_LENGTH or not re.match(NAME_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a name of up to {NAME_MAX_LENGTH} letters, digits and inner hyphens"
        )
    return value


def _a_strategy(value: str) -> str:
    bandit.strategy_parameters(value)  # ValueError naming the valid strategies
    return value


def _epsilon(value: float) -> float:
    try:
        return EPSILON.check(value)
    except bandit.ParameterError as error:
        raise ValueError(error.reason) from None  # the key already names the parameter


# An endpoint or variant name, as SageMaker allows them.
Name = Annotated[str, AfterValidator(_a_name)]
# A registered strategy's name (bandit.STRATEGY_NAMES).
StrategyName = Annotated[str, AfterValidator(_a_strategy)]
# The top-level `epsilon` of files written before `strategy_params`: EpsilonGreedy's epsilon.
LegacyEpsilon = Annotated[float, AfterValidator(_epsilon)]


# Reward kinds are bandit's (declared once there); units are the service's.
BINARY, CONTINUOUS = bandit.BINARY, bandit.CONTINUOUS
RewardKind = Literal[bandit.REWARD_KINDS]
USER, INVOCATION = "user", "invocation"
Unit = Literal["user", "invocation"]
# A week: the attribution most product teams report by (a "7-day conversion"), long enough
# for a purchase considered over a weekend, short enough that a conversion still follows
# from what the variant showed.
DEFAULT_ATTRIBUTION_WINDOW_SECONDS = 7 * 24 * 3600


class ExperimentSettings(BaseModel):
    """What an experiment measures, per endpoint, the same on every surface and stored with
    the endpoint's record as one value (so a setting added here is stored, read back and
    migrated, old records taking its default, with no change to either store)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reward: RewardKind = Field(
        BINARY,
        description='"binary": rewards in [0, 1] (a conversion, a score); "continuous": any '
        "finite number (revenue, dwell time)",
    )
    unit: Unit = Field(
        USER,
        description='What the decision counts as a trial: "user" (an assignment and its first '
        'conversion) or "invocation" (every invocation and conversion, the original\'s)',
    )
    attribution_window_seconds: int = Field(
        DEFAULT_ATTRIBUTION_WINDOW_SECONDS,
        gt=0,
        description="How long after a user's assignment a conversion counts; a later one is "
        "logged as late and not counted",
    )
    planned_sample_size: int = Field(
        TIGHTEST_AT,
        ge=100,
        le=1_000_000_000,
        description="The trials (users, or invocations with unit = invocation) the experiment "
        "is planned for: the always-valid confidence sequences are tightest there, so a call "
        "near it comes soonest (valid at any size)",
    )
    auto_conclude: bool = Field(
        False,
        description="Conclude the experiment as soon as an aggregation finds that the decision "
        "names a winner (nothing blocking it), recorded in the audit log as `auto-conclude`; "
        "only while running: a paused experiment waits for the person who paused it",
    )
    # The guardrails (off unless set): a variant breaching one, with evidence, is demoted
    # (`abtest.guardrails`).
    max_error_rate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Guardrail: a variant whose share of failed model calls is above this, "
        "with evidence (an always-valid test at 0.1 %), is demoted; unset: off",
    )
    max_latency_p99_ms: float | None = Field(
        None,
        gt=0,
        description="Guardrail: a variant whose model calls are slower than this more than 1 % "
        "of the time, with evidence (an always-valid test at 0.1 %), is demoted; unset: off",
    )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | None) -> ExperimentSettings:
        """Stored settings; a record written before settings existed takes the defaults."""
        return cls.model_validate_json(text) if text else cls()

    @classmethod
    def of(cls, fields: BaseModel) -> ExperimentSettings:
        """The settings keys of a surface's model (each surface's model inherits them)."""
        return cls.model_validate(fields.model_dump(include=set(cls.model_fields)))


class StrategyFields(ExperimentSettings):
    """The strategy and experiment keys of an endpoint, the same on every surface.

    `strategy_params` comes back complete (every declared parameter, defaults filled in:
    the defaults for the endpoint's `reward`, which may differ by kind) and checked by
    bandit, so every surface stores and shows the value the strategy runs with. The
    top-level `epsilon` of older files still works: it becomes the strategy's `epsilon`
    parameter if it has one, and is ignored otherwise (older files carried it for every
    strategy).

    Its validator is built when first used (it and its subclasses alike): the configuration
    surfaces use it, the API functions that import this module do not (0.6 ms of their cold
    start, `bench/coldstart.py`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    strategy: StrategyName = bandit.DEFAULT_STRATEGY
    epsilon: LegacyEpsilon | None = None
    strategy_params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    warmup: int = Field(0, ge=0)

    @field_validator("strategy_params")
    @classmethod
    def _declared_by_the_strategy(cls, params: dict[str, Any], info: ValidationInfo) -> dict:
        strategy = info.data.get("strategy")
        if strategy is None:  # already reported as a bad strategy
            return params
        legacy = info.data.get("epsilon")
        if legacy is not None and any(
            p.name == "epsilon" for p in bandit.strategy_parameters(strategy)
        ):
            if "epsilon" in params:
                raise nested_error(("epsilon",), "given twice: here and as the top-level epsilon")
            params = {**params, "epsilon": legacy}
        try:
            # `reward` is validated first (ExperimentSettings' fields come first); if it was
            # bad it is already reported, and the binary defaults stand in.
            reward = info.data.get("reward", BINARY)
            return bandit.check_params(strategy, params, reward=reward)
        except bandit.ParameterError as error:
            raise nested_error((error.parameter,), error.reason) from None


def nested_error(below: tuple[str | int, ...], reason: str) -> PydanticCustomError:
    """An error to raise from a validator about `below`, a key inside the validated value
    (pydantic would report it at the validated key itself)."""
    return PydanticCustomError(_NESTED_ERROR, "{reason}", {"below": below, "reason": reason})


def dotted_key(loc: tuple[str | int, ...]) -> str:
    """`("variants", 0, "name")` -> `variants[0].name`."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key


def describe_errors(
    error: ValidationError,
    key: Callable[[tuple[str | int, ...]], str] = dotted_key,
    model: type[BaseModel] | None = None,
) -> str:
    """`<key>: <reason>` for every error, joined by "; ", the reasons in plain words.

    Given the validated `model`, an unknown key's reason lists the known ones, so a typo
    is fixed without opening the docs.
    """
    parts = []
    for e in error.errors(include_url=False):
        loc = tuple(e["loc"])
        if e["type"] == _NESTED_ERROR:
            loc += tuple(e["ctx"]["below"])
        reason = {"missing": "missing", "extra_forbidden": "unknown key"}.get(e["type"], e["msg"])
        known = _keys_at(model, loc[:-1]) if e["type"] == "extra_forbidden" else None
        if known:
            reason += f" (known: {', '.join(sorted(known))})"
        elif e["type"] == "value_error":  # our own validators' messages, without pydantic's prefix
            reason = str(e["ctx"]["error"])
        elif reason == e["msg"] and isinstance(e.get("input"), str | int | float | bool):
            reason += f", got {e['input']!r}"
        where = key(loc)
        parts.append(f"{where}: {reason}" if where else reason)  # a whole-file check names its keys
    return "; ".join(parts)


def _keys_at(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> list[str] | None:
    """The keys of the model found at `loc` below `model`, if one is."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model in an annotation such as `Section`, `list[Section]` or `Section | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if found := _model_in(arg):
            return found
    return None
