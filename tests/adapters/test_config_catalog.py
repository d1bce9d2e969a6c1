"""The config-backed catalog: it describes exactly the endpoints it was given."""

from __future__ import annotations

import pytest

from abtest.adapters.config_catalog import ConfigCatalog
from abtest.errors import NotFoundError
from abtest.records import EndpointConfig, VariantConfig

CONFIG = EndpointConfig(
    "reviews-helpfulness", "EpsilonGreedy", 0.2, 5, (VariantConfig("Champion1", 3.0),)
)


def test_describes_its_endpoint_as_given():
    assert ConfigCatalog(CONFIG, source="reviews.toml").describe("reviews-helpfulness") is CONFIG


def test_any_other_endpoint_is_not_found_naming_the_source():
    with pytest.raises(NotFoundError, match=r"'other-endpoint' is not in reviews\.toml") as error:
        ConfigCatalog(CONFIG, source="reviews.toml").describe("other-endpoint")

    assert error.value.details == [{"field": "endpoint_name", "message": "not in the config"}]
