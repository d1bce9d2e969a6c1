"""The embedded endpoint config: TOML describing the endpoints, their variants and the event log.

A file holds one endpoint (`[endpoint]` and `[[variants]]`) or several (`[[endpoints]]`,
each with its `[[endpoints.variants]]`); `--config` may also name a folder, whose `*.toml`
files are read together. Every endpoint keeps its own settings; the event log is the
server's one, so files that set `[event_log]` must agree. The README's "Endpoint config
(TOML)" table lists the keys. A bad file fails at start with the file, the key and the
reason, never later on a request. TOML has real types, so the models are strict:
`warmup = "10"` or `epsilon = true` is an error, not a guess.
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


def _distinct_and_weighted(variants: list[VariantSpec]) -> list[VariantSpec]:
    seen: set[str] = set()
    for i, variant in enumerate(variants):
        if variant.name in seen:
            raise nested_error((i, "name"), f"{variant.name!r} is used by another variant")
        seen.add(variant.name)
    if not any(v.initial_weight > 0 for v in variants):
        raise ValueError("initial weights must not all be 0")
    return variants


class ConfigFile(BaseModel):
    """A file of one endpoint: `[endpoint]`, `[[variants]]`."""

    model_config = _STRICT

    endpoint: EndpointSection
    # None: not given, so a folder's other files decide (the defaults if none does).
    event_log: EventLogSettings | None = None
    variants: list[VariantSpec] = Field(min_length=1)

    _variants = field_validator("variants")(_distinct_and_weighted)

    def tables(self) -> list[tuple[str, EndpointSection, list[VariantSpec]]]:
        return [("endpoint", self.endpoint, self.variants)]


class EndpointTable(EndpointSection):
    """One `[[endpoints]]` table: an endpoint's keys and its own `[[endpoints.variants]]`."""

    variants: list[VariantSpec] = Field(min_length=1)

    _variants = field_validator("variants")(_distinct_and_weighted)


class EndpointsFile(BaseModel):
    """A file of several endpoints: `[[endpoints]]`, each with its variants."""

    model_config = _STRICT

    endpoints: list[EndpointTable] = Field(min_length=1)
    event_log: EventLogSettings | None = None

    def tables(self) -> list[tuple[str, EndpointSection, list[VariantSpec]]]:
        return [(f"endpoints[{i}]", e, e.variants) for i, e in enumerate(self.endpoints)]


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One endpoint of the config, flattened for the runtime."""

    path: Path  # the file that declares it
    endpoint_name: str
    strategy: str
    strategy_params: StrategyParams
    warmup: int
    assignment_ttl_seconds: int
    variants: tuple[VariantSpec, ...]
    model_timeout_seconds: float = DEFAULT_MODEL_TIMEOUT_SECONDS
    settings: ExperimentSettings = field(default_factory=ExperimentSettings)
    key: str = "endpoint"  # where in its file: `endpoint` or `endpoints[i]`, for errors

    def endpoint_config(self) -> EndpointConfig:
        return EndpointConfig(
            endpoint_name=self.endpoint_name,
            strategy=self.strategy,
            strategy_params=self.strategy_params,
            warmup=self.warmup,
            variants=tuple(VariantConfig(v.name, v.initial_weight) for v in self.variants),
            settings=self.settings,
        )


@dataclass(frozen=True, slots=True)
class AbtestConfig:
    """What `--config` names, loaded: its endpoints (in file order) and the server's event log.

    A config of one endpoint gives it as `endpoint`."""

    path: Path  # a file, or a folder of them
    event_log: EventLogSettings
    endpoints: tuple[EndpointSpec, ...]

    @property
    def endpoint_names(self) -> tuple[str, ...]:
        return tuple(e.endpoint_name for e in self.endpoints)

    @property
    def endpoint(self) -> EndpointSpec:
        """The endpoint of a one-endpoint config (the demo's, most tests'); a config of several
        says how many it has, rather than answering for the first."""
        if len(self.endpoints) != 1:
            raise ValueError(
                f"{self.path} has {len(self.endpoints)} endpoints; pick one of `endpoints`"
            )
        return self.endpoints[0]


def load_config(path: str | Path) -> AbtestConfig:
    """Read and validate a file, or every `*.toml` file of a folder (in name order).

    Raises ConfigError("<file>: <key>: <reason>"): also for an endpoint name used twice
    (within a file or across a folder's files) and for files whose `[event_log]` differ."""
    path = Path(path)
    if not path.is_dir():
        return _merged(path, [_load_file(path)])
    files = sorted(p for p in path.glob("*.toml") if p.is_file())
    if not files:
        raise ConfigError(f"{path}: a folder without any *.toml file")
    return _merged(path, [_load_file(file) for file in files])


def _merged(
    path: Path, files: list[tuple[EventLogSettings | None, list[EndpointSpec]]]
) -> AbtestConfig:
    """One config from files already validated on their own: names distinct, one event log."""
    declared: dict[str, EndpointSpec] = {}
    endpoints: list[EndpointSpec] = []
    event_log: tuple[Path, EventLogSettings] | None = None
    for settings, specs in files:
        for spec in specs:
            other = declared.get(spec.endpoint_name)
            if other is not None:
                where = "" if other.path == spec.path else f" of {other.path}"
                raise ConfigError(
                    f"{spec.path}: {spec.key}.name: {spec.endpoint_name!r} is used by "
                    f"{other.key}{where}; every endpoint needs its own name"
                )
            declared[spec.endpoint_name] = spec
            endpoints.append(spec)
        if settings is None:
            continue
        file = specs[0].path
        if event_log is not None and event_log[1] != settings:
            raise ConfigError(
                f"{file}: event_log: differs from {event_log[0]}'s; the event log is the "
                "server's, so give [event_log] in one file, or the same in each"
            )
        event_log = event_log or (file, settings)
    return AbtestConfig(
        path=path,
        event_log=event_log[1] if event_log else EventLogSettings(),
        endpoints=tuple(endpoints),
    )


def _load_file(path: Path) -> tuple[EventLogSettings | None, list[EndpointSpec]]:
    """One file: its `[event_log]` (None if absent) and its endpoints."""
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    # `[[endpoints]]` makes it a file of several endpoints; otherwise the one-endpoint form.
    model: type[ConfigFile | EndpointsFile] = EndpointsFile if "endpoints" in raw else ConfigFile
    both = [key for key in ("endpoint", "variants") if "endpoints" in raw and key in raw]
    if both:  # else told that `endpoint` is an unknown key, and endpoints[0] misses variants
        raise ConfigError(
            f"{path}: {both[0]}: beside [[endpoints]]; a file holds one endpoint ([endpoint] "
            "and [[variants]]) or several ([[endpoints]], each with [[endpoints.variants]])"
        )
    try:
        file = model.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe_errors(error, model=model)}") from None
    specs = [
        EndpointSpec(
            path=path,
            endpoint_name=endpoint.name,
            strategy=endpoint.strategy,
            strategy_params=endpoint.strategy_params,
            warmup=endpoint.warmup,
            assignment_ttl_seconds=endpoint.assignment_ttl_seconds,
            variants=tuple(variants),
            model_timeout_seconds=endpoint.model_timeout_seconds,
            settings=ExperimentSettings.of(endpoint),
            key=key,
        )
        for key, endpoint, variants in file.tables()
    ]
    return file.event_log, specs
