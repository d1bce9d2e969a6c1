"""`abtest redrive`: parked events go to the event log once, failed aggregations to the function."""

from __future__ import annotations

import gzip
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from abtest.adapters.redrive import redrive_aggregations
from abtest.cli import main
from tests.conftest import MOTO_CONFIG

REGION = "us-east-1"
STREAM = "abtest-events-test"
BUCKET = "abtest-events-bucket"


@pytest.fixture
def aws(aws_credentials, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config=MOTO_CONFIG):
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


def objects(prefix: str) -> dict[str, list[bytes]]:
    s3 = boto3.client("s3")
    found = {}
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []):
        body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        body = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        found[item["Key"]] = body.splitlines()
    return found


def park(sqs, queue: str, event: str, delivery: str | None) -> None:
    attributes = {"ErrorCode": {"DataType": "String", "StringValue": "ReadTimeoutError"}}
    if delivery:
        attributes["Delivery"] = {"DataType": "String", "StringValue": delivery}
    sqs.send_message(QueueUrl=queue, MessageBody=event, MessageAttributes=attributes)


def event(n: int) -> str:
    return json.dumps({"type": "invocation", "user_id": f"u{n}", "inference_id": f"i{n}"}) + "\n"


def redrive(queue: str, *extra: str) -> int:
    return main(["redrive", "events", "--queue-url", queue, "--bucket", BUCKET, *extra])


def test_parked_events_are_written_to_the_log_once_and_leave_the_queue(aws, capsys):
    queue = aws.create_queue(QueueName="abtest-undelivered-events-test")["QueueUrl"]
    events = [event(i) for i in range(23)]
    for i, line in enumerate(events):
        park(aws, queue, line, "refused" if i % 2 else None)  # None: parked by an older sink

    assert redrive(queue) == 0

    written = objects("events/redriven/")
    assert len(written) == 1  # one object per chunk, not one per event
    assert sorted(*written.values()) == sorted(e.rstrip("\n").encode() for e in events)
    assert "redrove 23 message(s); 0 left" in capsys.readouterr().out
    assert "Messages" not in aws.receive_message(QueueUrl=queue, WaitTimeSeconds=0)


def test_an_event_whose_answer_was_lost_is_written_only_if_firehose_did_not_deliver_it(aws, capsys):
    queue = aws.create_queue(QueueName="abtest-undelivered-events-test")["QueueUrl"]
    delivered, lost = event(1), event(2)
    # Firehose took the first (its answer was lost on the way back), never saw the second.
    boto3.client("firehose").put_record_batch(
        DeliveryStreamName=STREAM, Records=[{"Data": delivered.encode()}]
    )
    park(aws, queue, delivered, "uncertain")
    park(aws, queue, lost, "uncertain")

    assert redrive(queue, "--settle", "0") == 0

    assert list(objects("events/redriven/").values()) == [[lost.rstrip("\n").encode()]]
    assert "redrove 1 message(s), 1 found already logged; 0 left" in capsys.readouterr().out
    assert "Messages" not in aws.receive_message(QueueUrl=queue, WaitTimeSeconds=0)


def test_an_uncertain_event_waits_until_firehose_has_had_time_to_deliver_it(aws, capsys):
    queue = aws.create_queue(QueueName="abtest-undelivered-events-test")["QueueUrl"]
    park(aws, queue, event(1), "uncertain")

    assert redrive(queue) == 1  # parked just now; the default wait is Firehose's buffer

    assert objects("events/redriven/") == {}
    assert "may still reach the log through Firehose" in capsys.readouterr().out


def test_redrive_events_needs_the_bucket(aws, capsys):
    assert main(["redrive", "events", "--queue-url", "https://queue"]) == 2
    assert "--bucket" in capsys.readouterr().err


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
