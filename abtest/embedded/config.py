"""The embedded endpoint config: one TOML file describing the endpoint, its event log and variants.

The README's "Endpoint config (TOML)" table lists the keys. A bad file fails at start with
the file, the key and the reason, never later on a request. TOML has real types, so the
models are strict: `warmup = "10"` or `epsilon = true` is an error, not a guess.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from abtest.adapters.local_models import a_model, is_url
from abtest.config_types import (
    ExperimentSettings,
    Name,
    StrategyFields,
    describe_errors,
    nested_error,
)
from abtest.errors import ConfigError
from abtest.records import EndpointConfig, StrategyParams, VariantConfig

DEFAULT_TTL_SECONDS = 90 * 24 * 3600
DEFAULT_MODEL_TIMEOUT_SECONDS = 30.0
# Firehose's BufferingHints defaults.
DEFAULT_BUFFER_INTERVAL_SECONDS = 60.0
DEFAULT_BUFFER_SIZE_BYTES = 1024 * 1024
DEFAULT_RETENTION_DAYS = 90.0

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class EndpointSection(StrategyFields):
    """`[endpoint]`: the strategy keys every surface shares, plus the name and the TTL."""

    model_config = _STRICT

    name: Name
    assignment_ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, gt=0)
    # Each model call's bound; a call over it is a 502 naming the variant.
    model_timeout_seconds: float = Field(DEFAULT_MODEL_TIMEOUT_SECONDS, gt=0)


class EventLogSettings(BaseModel):
    """`[event_log]`: when the buffer is sealed, like Firehose's buffering hints."""

    model_config = _STRICT

    buffer_interval_seconds: float = Field(DEFAULT_BUFFER_INTERVAL_SECONDS, gt=0)
    buffer_size_bytes: int = Field(DEFAULT_BUFFER_SIZE_BYTES, gt=0)
    # Counted files older than this are deleted at start (0: kept for ever), like the
    # bucket's lifecycle rule on AWS (`event_retention_days`).
    retention_days: float = Field(DEFAULT_RETENTION_DAYS, ge=0)


class VariantSpec(BaseModel):
    """One `[[variants]]` table."""

    model_config = _STRICT

    name: Name
    initial_weight: float = Field(1.0, ge=0)
    model: Annotated[str, AfterValidator(a_model)]  # "package.module:function" or a URL
    # Called on the server's event loop, without a thread or a timeout: fast callables only.
    inline: bool = False

    @property
    def is_url(self) -> bool:
        return is_url(self.model)

    @model_validator(mode="after")
    def _inline_callable(self) -> VariantSpec:
        if self.inline and self.is_url:
            raise nested_error(("inline",), "only a Python callable runs inline, not a URL")
        return self


class ConfigFile(BaseModel):
    """The whole file."""

    model_config = _STRICT

    endpoint: EndpointSection
    event_log: EventLogSettings = EventLogSettings()
    variants: list[VariantSpec] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _distinct_and_weighted(cls, variants: list[VariantSpec]) -> list[VariantSpec]:
        seen: set[str] = set()
        for i, variant in enumerate(variants):
            if variant.name in seen:
                raise nested_error((i, "name"), f"{variant.name!r} is used by another variant")
            seen.add(variant.name)
        if not any(v.initial_weight > 0 for v in variants):
            raise ValueError("initial weights must not all be 0")
        return variants


@dataclass(frozen=True, slots=True)
class AbtestConfig:
    """A loaded file, flattened for the runtime."""

    path: Path
    endpoint_name: str
    strategy: str
    strategy_params: StrategyParams
    warmup: int
    assignment_ttl_seconds: int
    event_log: EventLogSettings
    variants: tuple[VariantSpec, ...]
    model_timeout_seconds: float = DEFAULT_MODEL_TIMEOUT_SECONDS
    settings: ExperimentSettings = field(default_factory=ExperimentSettings)

    def endpoint_config(self) -> EndpointConfig:
        return EndpointConfig(
            endpoint_name=self.endpoint_name,
            strategy=self.strategy,
            strategy_params=self.strategy_params,
            warmup=self.warmup,
            variants=tuple(VariantConfig(v.name, v.initial_weight) for v in self.variants),
            settings=self.settings,
        )


def load_config(path: str | Path) -> AbtestConfig:
    """Read and validate the file; raises ConfigError("<file>: <key>: <reason>")."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    try:
        file = ConfigFile.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe_errors(error, model=ConfigFile)}") from None
    endpoint = file.endpoint
    return AbtestConfig(
        path=path,
        endpoint_name=endpoint.name,
        strategy=endpoint.strategy,
        strategy_params=endpoint.strategy_params,
        warmup=endpoint.warmup,
        assignment_ttl_seconds=endpoint.assignment_ttl_seconds,
        event_log=file.event_log,
        variants=tuple(file.variants),
        model_timeout_seconds=endpoint.model_timeout_seconds,
        settings=ExperimentSettings.of(endpoint),
    )
