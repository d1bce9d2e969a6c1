from __future__ import annotations

import pytest

from abtest.errors import ConfigError
from lambdas.wiring import require, settings


def test_missing_variables_are_named_at_cold_start():
    with pytest.raises(ConfigError, match="DELIVERY_STREAM_NAME") as error:
        require("invocation", {"ASSIGNMENT_TABLE": "a", "METRICS_TABLE": "m"})

    assert "invocation handler" in str(error.value)


def test_each_handler_needs_only_its_own_variables():
    assert require("stats", {"METRICS_TABLE": "m"}) == {"METRICS_TABLE": "m"}


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_bad_numbers_are_refused(value):
    with pytest.raises(ConfigError, match="METRICS_CACHE_SECONDS"):
        settings({"METRICS_CACHE_SECONDS": value})


def test_numbers_are_read():
    read = settings({"ASSIGNMENT_TTL_SECONDS": "60", "METRICS_CACHE_SECONDS": "0.5"})

    assert (read.assignment_ttl_seconds, read.metrics_cache_seconds) == (60, 0.5)
