"""The embedded endpoint config: one TOML file describing the endpoint, its event log and variants.

Keys and meanings are DESIGN.md's "Embedded endpoint config". A bad file fails at
start with the file, the key and the reason, never later on a request.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abtest.adapters.endpoint_tags import (
    DEFAULT_EPSILON,
    DEFAULT_STRATEGY,
    DEFAULT_WARMUP,
    parse_epsilon,
    parse_strategy,
    parse_warmup,
)
from abtest.errors import ConfigError, NotFoundError
from abtest.http.bodies import NAME_PATTERN
from abtest.records import EndpointConfig, VariantConfig

DEFAULT_TTL_SECONDS = 90 * 24 * 3600
DEFAULT_MODEL_TIMEOUT_SECONDS = 30.0
# Firehose's BufferingHints defaults.
DEFAULT_BUFFER_INTERVAL_SECONDS = 60.0
DEFAULT_BUFFER_SIZE_BYTES = 1024 * 1024

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_KEYS = {
    "endpoint": {
        "name",
        "strategy",
        "epsilon",
        "warmup",
        "assignment_ttl_seconds",
        "model_timeout_seconds",
    },
    "event_log": {"buffer_interval_seconds", "buffer_size_bytes"},
    "variants": {"name", "initial_weight", "model"},
}


@dataclass(frozen=True, slots=True)
class VariantSpec:
    name: str
    initial_weight: float
    model: str  # "package.module:function" or an http(s):// URL

    @property
    def is_url(self) -> bool:
        return is_url(self.model)


@dataclass(frozen=True, slots=True)
class EventLogSettings:
    buffer_interval_seconds: float = DEFAULT_BUFFER_INTERVAL_SECONDS
    buffer_size_bytes: int = DEFAULT_BUFFER_SIZE_BYTES


@dataclass(frozen=True, slots=True)
class AbtestConfig:
    path: Path
    endpoint_name: str
    strategy: str
    epsilon: float
    warmup: int
    assignment_ttl_seconds: int
    event_log: EventLogSettings
    variants: tuple[VariantSpec, ...]
    model_timeout_seconds: float = DEFAULT_MODEL_TIMEOUT_SECONDS

    def endpoint_config(self) -> EndpointConfig:
        return EndpointConfig(
            endpoint_name=self.endpoint_name,
            strategy=self.strategy,
            epsilon=self.epsilon,
            warmup=self.warmup,
            variants=tuple(VariantConfig(v.name, v.initial_weight) for v in self.variants),
        )


class ConfigCatalog:
    """EndpointCatalog over the config file: it knows exactly one endpoint."""

    def __init__(self, config: AbtestConfig) -> None:
        self.config = config

    def describe(self, endpoint_name: str) -> EndpointConfig:
        if endpoint_name != self.config.endpoint_name:
            raise NotFoundError(
                f"endpoint_name: {endpoint_name!r} is not in {self.config.path}",
                details=[{"field": "endpoint_name", "message": "not in the config"}],
            )
        return self.config.endpoint_config()


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


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
        return _parse(path, raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _parse(path: Path, raw: dict[str, Any]) -> AbtestConfig:
    _no_unknown_keys(raw, "", set(_KEYS))
    endpoint = _table(raw, "endpoint")
    _no_unknown_keys(endpoint, "endpoint.", _KEYS["endpoint"])
    name = _name(endpoint.get("name"), "endpoint.name")

    strategy = endpoint.get("strategy", DEFAULT_STRATEGY)
    if not isinstance(strategy, str):
        raise ConfigError(f"endpoint.strategy: {strategy!r} is not a string")
    strategy = parse_strategy(strategy, source="endpoint.strategy")
    epsilon = parse_epsilon(endpoint.get("epsilon", DEFAULT_EPSILON), source="endpoint.epsilon")
    warmup = parse_warmup(endpoint.get("warmup", DEFAULT_WARMUP), source="endpoint.warmup")
    ttl = endpoint.get("assignment_ttl_seconds", DEFAULT_TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ConfigError(f"endpoint.assignment_ttl_seconds: {ttl!r} is not a whole number > 0")

    timeout = endpoint.get("model_timeout_seconds", DEFAULT_MODEL_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigError(f"endpoint.model_timeout_seconds: {timeout!r} is not a number > 0")

    log = _table(raw, "event_log", required=False)
    _no_unknown_keys(log, "event_log.", _KEYS["event_log"])
    interval = log.get("buffer_interval_seconds", DEFAULT_BUFFER_INTERVAL_SECONDS)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ConfigError(f"event_log.buffer_interval_seconds: {interval!r} is not a number > 0")
    size = log.get("buffer_size_bytes", DEFAULT_BUFFER_SIZE_BYTES)
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ConfigError(f"event_log.buffer_size_bytes: {size!r} is not a whole number > 0")

    variants = _variants(raw.get("variants"))
    return AbtestConfig(
        path=path,
        endpoint_name=name,
        strategy=strategy,
        epsilon=epsilon,
        warmup=warmup,
        assignment_ttl_seconds=ttl,
        event_log=EventLogSettings(float(interval), size),
        variants=variants,
        model_timeout_seconds=float(timeout),
    )


def _variants(raw: Any) -> tuple[VariantSpec, ...]:
    if raw is None:
        raise ConfigError("variants: missing; add at least one [[variants]] table")
    if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw) or not raw:
        raise ConfigError("variants: must be one or more [[variants]] tables")
    variants: list[VariantSpec] = []
    for i, table in enumerate(raw):
        key = f"variants[{i}]"
        _no_unknown_keys(table, f"{key}.", _KEYS["variants"])
        name = _name(table.get("name"), f"{key}.name")
        if name in {v.name for v in variants}:
            raise ConfigError(f"{key}.name: {name!r} is used by another variant")
        weight = table.get("initial_weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise ConfigError(f"{key}.initial_weight: {weight!r} is not a number >= 0")
        model = table.get("model")
        if not isinstance(model, str) or not (is_url(model) or _CALLABLE.match(model)):
            raise ConfigError(
                f"{key}.model: {model!r} is neither 'package.module:function' nor an http(s):// URL"
            )
        variants.append(VariantSpec(name, float(weight), model))
    if sum(v.initial_weight for v in variants) <= 0:
        raise ConfigError("variants: initial weights must not all be 0")
    return tuple(variants)


def _table(raw: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
    value = raw.get(key)
    if value is None and not required:
        return {}
    if value is None:
        raise ConfigError(f"{key}: missing [{key}] table")
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a [{key}] table")
    return value


def _name(value: Any, key: str) -> str:
    if value is None:
        raise ConfigError(f"{key}: missing")
    if not isinstance(value, str) or len(value) > 63 or not re.match(NAME_PATTERN, value):
        raise ConfigError(
            f"{key}: {value!r} is not a name of up to 63 letters, digits and inner hyphens"
        )
    return value


def _no_unknown_keys(table: dict[str, Any], prefix: str, known: set[str]) -> None:
    # A misspelt key would otherwise silently take its default.
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")
