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
    # The endpoint's record was read: the fallback draws by its allocation (warm-up's, even)
    assert (status, invoked["assignment"]) == (200, "fallback")
    assert invoked["target_variant"] == invoked["endpoint_variant"]
    assert (invoked["target_variant"], invoked["propensity"]) in {
        ("Champion1", 0.5),
        ("Challenger1", 0.5),
    }
    assert aws.runtime.calls[-1]["TargetVariant"] == invoked["target_variant"]

    status, error = call(
        aws.conversion,
        api_event("/conversion", {"endpoint_name": ENDPOINT, "user_id": "u1"}),
    )
    assert status == 503
    assert set(error) == {"error", "message", "details"}
    assert "ResourceNotFoundException" in error["message"]
