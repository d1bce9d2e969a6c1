"""Each API handler answers bad input on moto as the resolver does in-process.

The cases themselves run in-process in tests/http/test_bad_input.py; here one per handler
checks the wiring: a JSON 4xx naming the field, and no assignment written.
"""

from __future__ import annotations

import boto3
import pytest

from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, create_endpoint, state_change

TAGS = {"ab-testing:strategy": "EpsilonGreedy", "ab-testing:epsilon": "0.2"}


@pytest.mark.parametrize(
    ("route", "body", "status", "field"),
    [
        (
            "invocation",
            {"endpoint_name": ENDPOINT, "data": "x", "endpoint_variant": "Nope"},
            409,
            "endpoint_variant",
        ),
        ("conversion", {"endpoint_name": ENDPOINT, "user_id": "u", "reward": 1.5}, 400, "reward"),
        ("stats", {"endpoint_name": "unknown-endpoint"}, 404, "endpoint_name"),
    ],
)
def test_each_handler_names_the_field_and_stores_nothing(aws, route, body, status, field):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    code, response = call(getattr(aws, route), api_event(f"/{route}", body))

    assert code == status, response
    assert field in response["message"]
    assert field in [d["field"] for d in response["details"]]
    assignments = boto3.client("dynamodb").scan(TableName="abtest-assignment-test")["Items"]
    assert assignments == []
