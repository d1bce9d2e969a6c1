"""Auto-conclude on AWS (moto): the metrics function's aggregation concludes an endpoint tagged
`ab-testing:auto_conclude` once its decision names a winner; the winner then serves every
user through the invocation function, and a redelivered object concludes nothing twice."""

from __future__ import annotations

import random

import boto3
import pytest

from abtest.adapters.dynamodb import DynamoDBStore
from tests.adapters.test_auto_conclude_stores import _counts_with_a_clear_winner
from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, ENVIRONMENT, create_endpoint, s3_event, state_change
from tests.lambdas.test_end_to_end import deliver

TAGS = {
    "ab-testing:strategy": "ThompsonSampling",
    "ab-testing:warmup": "0",
    "ab-testing:auto_conclude": "true",
}
NAME = {"endpoint_name": ENDPOINT}


def invoke(aws, user: str) -> dict:
    status, body = call(
        aws.invocation, api_event("/invocation", {**NAME, "user_id": user, "data": "x"})
    )
    assert status == 200, body
    return body


@pytest.mark.slow(seconds=4)  # moto transactions
@pytest.mark.parametrize("auto_conclude", ["true", "false"])
def test_the_metrics_function_concludes_a_called_winner(aws, monkeypatch, auto_conclude) -> None:
    monkeypatch.setattr(aws.invocation.use_case, "rng", random.Random(1))  # both variants drawn
    # GIVEN an endpoint registered from its tags, users on both variants, and counters
    # that already call the challenger
    create_endpoint({**TAGS, "ab-testing:auto_conclude": auto_conclude})
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    store = DynamoDBStore(
        ENVIRONMENT["ASSIGNMENT_TABLE"],
        ENVIRONMENT["METRICS_TABLE"],
        client=boto3.client("dynamodb"),
    )
    early = {user: invoke(aws, user)["target_variant"] for user in ("a", "b", "c", "d", "e", "f")}
    assert set(early.values()) == {"Champion1", "Challenger1"}
    _counts_with_a_clear_winner(store, ENDPOINT)

    # WHEN the bucket notification hands their events to the metrics function
    seen: set[str] = set()
    (summary,) = deliver(aws, seen)
    assert summary["applied"]

    # THEN with auto_conclude the experiment is concluded, by auto-conclude, with its evidence
    status, shown = call(aws.show, api_event("/admin/show", NAME))
    assert status == 200
    if auto_conclude == "false":
        assert (shown["state"], shown["audit_log"]) == ("running", [])
        return
    assert (shown["state"], shown["winner"], shown["promotion"]) == (
        "concluded",
        "Challenger1",
        "done",
    )
    entry, promoted = shown["audit_log"]
    assert (entry["actor"], entry["action"]) == ("auto-conclude", "conclude")
    assert "always-valid p" in entry["reason"]
    # ... and, as a person's conclusion does, it promoted the winner in SageMaker
    assert (promoted["actor"], promoted["action"]) == ("auto-conclude", "promote")
    assert promoted["details"]["weights"] == {"Champion1": 0.0, "Challenger1": 1.0}
    variants = boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    weights = {v["VariantName"]: v["DesiredWeight"] for v in variants["ProductionVariants"]}
    assert weights == {"Champion1": 0.0, "Challenger1": 1.0}
    # a redelivery of the same object counts nothing and concludes nothing again
    (key,) = seen
    (again,) = aws.metrics.lambda_handler(s3_event("abtest-events-test", [key]), Context())[
        "objects"
    ]
    assert not again["applied"]
    assert len(call(aws.show, api_event("/admin/show", NAME))[1]["audit_log"]) == 2
    # and the winner serves every user, new and existing
    served = {invoke(aws, user)["endpoint_variant"] for user in [*early, "new-1", "new-2"]}
    assert served == {"Challenger1"}
