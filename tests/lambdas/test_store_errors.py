"""A store the functions cannot use is answered in the documented shape, never a crash."""

from __future__ import annotations

import boto3
import pytest

from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, create_endpoint, state_change

TAGS = {"ab-testing:strategy": "ThompsonSampling"}


@pytest.fixture
def registered(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    return aws


def test_a_missing_assignment_table_falls_back_on_invocation_and_is_503_on_conversion(registered):
    aws = registered
    boto3.client("dynamodb").delete_table(TableName="abtest-assignment-test")

    status, invoked = call(
        aws.invocation,
        api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": "u1", "data": "x"}),
    )
    assert (status, invoked["assignment"], invoked["target_variant"]) == (200, "fallback", None)

    status, error = call(
        aws.conversion,
        api_event("/conversion", {"endpoint_name": ENDPOINT, "user_id": "u1"}),
    )
    assert status == 503
    assert set(error) == {"error", "message", "details"}
    assert "ResourceNotFoundException" in error["message"]
