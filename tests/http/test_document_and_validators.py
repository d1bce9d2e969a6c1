"""The OpenAPI document and the request validators agree: the document says each bound the
validators hold, in JSON Schema's words, and what it calls valid is taken."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from abtest.http.api import JSON, Api
from abtest.http.openapi import openapi_json
from tests.embedded.helpers import ENDPOINT

# Pydantic's names for bounds; JSON Schema's are minimum, maximum, minLength...
PYDANTIC_ONLY = {"ge", "le", "gt", "lt", "min_length", "max_length", "multiple_of"}


def _keywords(schema: Any, within_properties: bool = False) -> Iterator[str]:
    """Every keyword of the document's schemas (the names of properties excepted)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if not within_properties:
                yield key
            yield from _keywords(value, key == "properties")
    elif isinstance(schema, list):
        for item in schema:
            yield from _keywords(item)


def test_every_bound_is_in_json_schemas_words() -> None:
    # initial_weight's and weights' bounds were "ge" and "le": the document allowed any number.
    schemas = json.loads(openapi_json(token=False))["components"]["schemas"]

    assert set(_keywords(schemas)) & PYDANTIC_ONLY == set()
    weight = schemas["AddVariantRequest"]["properties"]["initial_weight"]
    assert (weight["minimum"], weight["maximum"]) == (0, 1e6)


def test_an_integer_written_with_a_fraction_of_zero_is_an_integer(runtime) -> None:
    # JSON Schema's integer (the document's type of limit) is any number without a fraction.
    api = Api(runtime.use_cases)
    body = json.dumps({"endpoint_name": ENDPOINT, "limit": 5.0})

    answer = api.answer("POST", "/history", JSON, body)

    assert answer.status == 200, answer.body
    refused = api.answer("POST", "/history", JSON, body.replace("5.0", "5.5"))
    assert refused.status == 400
    assert [d["field"] for d in json.loads(refused.body)["details"]] == ["limit"]
