"""An EndpointCatalog over configuration already read: the embedded runtime's endpoints."""

from __future__ import annotations

from abtest.errors import NotFoundError
from abtest.records import EndpointConfig


class ConfigCatalog:
    """Knows exactly the endpoints it is given; `source` (the config) names them in errors."""

    def __init__(self, *configs: EndpointConfig, source: str) -> None:
        self.configs = {config.endpoint_name: config for config in configs}
        self.source = source

    def describe(self, endpoint_name: str) -> EndpointConfig:
        config = self.configs.get(endpoint_name)
        if config is None:
            raise NotFoundError(
                f"endpoint_name: {endpoint_name!r} is not in {self.source}",
                details=[{"field": "endpoint_name", "message": "not in the config"}],
            )
        return config
