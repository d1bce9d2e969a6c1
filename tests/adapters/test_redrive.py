"""`abtest redrive`: parked events go back to Firehose, failed aggregations to the function."""

from __future__ import annotations

import gzip
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from abtest.adapters.redrive import redrive_aggregations
from abtest.cli import main

REGION = "us-east-1"
STREAM = "abtest-events-test"
BUCKET = "abtest-events-bucket"


@pytest.fixture
def aws(aws_credentials, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("firehose").create_delivery_stream(
            DeliveryStreamName=STREAM,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "Prefix": "events/",
            },
        )
        yield boto3.client("sqs")


def delivered_lines() -> list[bytes]:
    s3 = boto3.client("s3")
    lines = []
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        body = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        lines += body.splitlines()
    return lines


def test_parked_events_go_back_to_their_stream_and_leave_the_queue(aws, capsys):
    queue = aws.create_queue(QueueName="abtest-undelivered-events-test")["QueueUrl"]
    events = [json.dumps({"type": "invocation", "user_id": f"u{i}"}) + "\n" for i in range(23)]
    for event in events:
        aws.send_message(
            QueueUrl=queue,
            MessageBody=event,
            MessageAttributes={
                "DeliveryStreamName": {"DataType": "String", "StringValue": STREAM},
                "ErrorCode": {"DataType": "String", "StringValue": "ServiceUnavailableException"},
            },
        )

    assert main(["redrive", "events", "--queue-url", queue]) == 0

    assert sorted(delivered_lines()) == sorted(e.rstrip("\n").encode() for e in events)
    assert "redrove 23 message(s); 0 left" in capsys.readouterr().out
    assert "Messages" not in aws.receive_message(QueueUrl=queue, WaitTimeSeconds=0)


def test_an_event_with_no_stream_stays_in_the_queue_and_the_command_says_so(aws, capsys):
    queue = aws.create_queue(QueueName="abtest-undelivered-events-test")["QueueUrl"]
    aws.send_message(QueueUrl=queue, MessageBody='{"type": "invocation"}')

    assert main(["redrive", "events", "--queue-url", queue]) == 1

    out = capsys.readouterr().out
    assert "0 left" not in out and "no stream named" in out
    assert delivered_lines() == []


def test_failed_aggregations_invoke_the_function_again_with_the_s3_event(aws):
    queue = aws.create_queue(QueueName="abtest-failed-aggregations-test")["QueueUrl"]
    s3_event = {"Records": [{"s3": {"bucket": {"name": BUCKET}, "object": {"key": "events/1"}}}]}
    function = "arn:aws:lambda:us-east-1:123456789012:function:abtest-metrics-test"
    failure = {
        "requestContext": {"functionArn": f"{function}:$LATEST", "condition": "RetriesExhausted"},
        "requestPayload": s3_event,
    }
    aws.send_message(QueueUrl=queue, MessageBody=json.dumps(failure))
    aws.send_message(QueueUrl=queue, MessageBody="not a failure record")
    lambda_client = boto3.client("lambda")

    with Stubber(lambda_client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": function,
                "InvocationType": "Event",
                "Payload": json.dumps(s3_event).encode(),
            },
        )
        result = redrive_aggregations(aws, lambda_client, queue)
        stub.assert_no_pending_responses()

    assert (result.sent, result.kept) == (1, 1)
    assert "not a Lambda failure record" in result.reasons[0]
