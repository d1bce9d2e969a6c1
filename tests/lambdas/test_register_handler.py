from __future__ import annotations

import boto3

from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, create_endpoint, s3_event, state_change

TAGS = {
    "ab-testing:strategy": "EpsilonGreedy",
    "ab-testing:epsilon": "0.05",
    "ab-testing:warmup": "10",
}


def stats(aws) -> dict:
    return call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))[1]


def test_in_service_reads_variants_weights_and_tags(aws):
    create_endpoint(TAGS)

    result = aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    assert result == {
        "endpoint_name": ENDPOINT,
        "action": "registered",
        "variants": ["Champion1", "Challenger1"],
    }
    body = stats(aws)
    assert (body["strategy"], body["epsilon"], body["warmup"]) == ("EpsilonGreedy", 0.05, 10)
    assert body["strategy_params"] == {"epsilon": 0.05, "floor": 0.01}
    assert [m["initial_variant_weight"] for m in body["variant_metrics"]] == [1.0, 1.0]


def test_second_in_service_keeps_the_counters(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    for n in range(5):
        call(
            aws.invocation,
            api_event("/invocation", {"endpoint_name": ENDPOINT, "user_id": f"u{n}", "data": "x"}),
        )
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket="abtest-events-test")["Contents"]]
    aws.metrics.lambda_handler(s3_event("abtest-events-test", keys), Context())

    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    assert sum(m["invocation_count"] for m in stats(aws)["variant_metrics"]) == 5


def test_bad_tag_is_refused_loudly_and_nothing_registered(aws, caplog):
    create_endpoint({"ab-testing:strategy": "Greedy"})

    result = aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    assert result["action"] == "rejected"
    assert "ab-testing:strategy" in result["reason"]
    assert call(aws.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))[0] == 404


def test_deleting_stops_serving_but_keeps_statistics(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    result = aws.register.lambda_handler(state_change(ENDPOINT, "DELETING"), Context())

    assert result["action"] == "deregistered"
    assert stats(aws)["status"] == "deleted"
    code, _ = call(
        aws.invocation, api_event("/invocation", {"endpoint_name": ENDPOINT, "data": "x"})
    )
    assert code == 404


def test_endpoints_outside_the_prefix_are_ignored(aws):
    create_endpoint(TAGS, name="someone-elses-endpoint")

    result = aws.register.lambda_handler(
        state_change("someone-elses-endpoint", "IN_SERVICE"), Context()
    )

    assert result["action"] == "ignored"
    item = boto3.client("dynamodb").get_item(
        TableName="abtest-metrics-test", Key={"endpoint_name": {"S": "someone-elses-endpoint"}}
    )
    assert "Item" not in item
