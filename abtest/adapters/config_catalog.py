"""An EndpointCatalog over configuration already read: the embedded runtime's endpoints."""

from __future__ import annotations

from typing import Protocol

from abtest.errors import BadRequestError, NotFoundError
from abtest.records import EndpointConfig


class AddsModels(Protocol):
    def add(self, endpoint_name: str, variant_name: str, model: str) -> None: ...


class ConfigCatalog:
    """Knows exactly the endpoints it is given; `source` (the config file) names them in errors.
    Variants added at run time are called through `models` (the local models)."""

    def __init__(
        self, *configs: EndpointConfig, source: str, models: AddsModels | None = None
    ) -> None:
        self.configs = {config.endpoint_name: config for config in configs}
        self.source = source
        self.models = models

    def describe(self, endpoint_name: str) -> EndpointConfig:
        config = self.configs.get(endpoint_name)
        if config is None:
            raise NotFoundError(
                f"endpoint_name: {endpoint_name!r} is not in {self.source}",
                details=[{"field": "endpoint_name", "message": "not in the config"}],
            )
        return config

    def prepare_variant(self, endpoint_name: str, variant_name: str, model: str | None) -> None:
        """The server calls a variant's model itself: `model` is required, and loaded now."""
        self.describe(endpoint_name)
        if model is None or self.models is None:
            raise BadRequestError.field(
                "model",
                "required: the model this server calls for the variant "
                "('package.module:function' or an http(s):// URL)",
            )
        self.models.add(endpoint_name, variant_name, model)
