"""FirehoseSink: delivery through moto, partial failures through Stubber and a fake client."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from botocore.stub import Stubber

from abtest.adapters.firehose import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    FirehoseSink,
)
from abtest.errors import EventLogUnavailableError

STREAM = "abtest-events"
BUCKET = "abtest-events-bucket"


def _event(n: int, **extra) -> dict:
    return {
        "type": "invocation",
        "timestamp": 1_700_000_000.0 + n,
        "endpoint_name": "reviews",
        "variant_name": "Champion1",
        "user_id": f"user-{n}",
        "inference_id": f"inf-{n}",
        "strategy": "ThompsonSampling",
        "propensity": 0.5,
        **extra,
    }


def _line(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


@pytest.fixture
def dlq(fake_aws):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="abtest-events-dlq")["QueueUrl"]
    return sqs, url


def _drain(sqs, url) -> list[dict]:
    messages = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages"):
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in batch],
        )
    return messages


class FakeFirehose:
    """Takes every record except those whose event is scripted to fail, attempt after attempt.

    `fail` maps a user_id to how many attempts fail before one succeeds (or forever: None).
    """

    def __init__(self, fail: dict[str, int | None] | None = None, raise_code: str | None = None):
        self.fail = dict(fail or {})
        self.raise_code = raise_code
        self.calls: list[list[bytes]] = []
        self.delivered: list[bytes] = []

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict]) -> dict:
        assert DeliveryStreamName == STREAM
        data = [r["Data"] for r in Records]
        self.calls.append(data)
        if self.raise_code:
            raise ClientError(
                {"Error": {"Code": self.raise_code, "Message": "slow down"}}, "PutRecordBatch"
            )
        responses = []
        for record in data:
            user = json.loads(record)["user_id"]
            if user in self.fail and (self.fail[user] is None or self.fail[user] > 0):
                if self.fail[user] is not None:
                    self.fail[user] -= 1
                responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "x"})
            else:
                self.delivered.append(record)
                responses.append({"RecordId": f"r{len(self.delivered)}"})
        failed = sum("ErrorCode" in r for r in responses)
        return {"FailedPutCount": failed, "RequestResponses": responses}


def test_events_are_delivered_to_s3_as_json_lines(fake_aws):
    # GIVEN a DirectPut stream delivering to S3
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    firehose = boto3.client("firehose", region_name="us-east-1")
    firehose.create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamType="DirectPut",
        S3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{BUCKET}",
        },
    )
    events = [_event(1), _event(2, reward=1.0, type="conversion"), _event(3, note="ünïcode")]
    # WHEN the sink puts them
    FirehoseSink(STREAM, client=firehose).put(events)
    # THEN the delivered object is the events, one compact JSON line each
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    body = b"".join(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys)
    assert body == b"".join(_line(e) for e in events)
    assert [json.loads(line) for line in body.splitlines()] == events


def test_one_event_is_one_put_record_batch_call():
    fake = FakeFirehose()
    FirehoseSink(STREAM, client=fake).put([_event(1)])
    assert fake.calls == [[_line(_event(1))]]


def test_no_events_make_no_call():
    fake = FakeFirehose()
    FirehoseSink(STREAM, client=fake).put([])
    assert fake.calls == []


def test_batches_respect_the_record_count_limit_and_keep_order():
    fake = FakeFirehose()
    events = [_event(n) for n in range(1201)]
    FirehoseSink(STREAM, client=fake).put(events)
    assert [len(call) for call in fake.calls] == [MAX_BATCH_RECORDS, MAX_BATCH_RECORDS, 201]
    assert fake.delivered == [_line(e) for e in events]


def test_batches_respect_the_byte_limit():
    fake = FakeFirehose()
    events = [_event(n, predictions="x" * 300_000) for n in range(30)]
    FirehoseSink(STREAM, client=fake).put(events)
    assert len(fake.calls) > 1
    assert all(sum(map(len, call)) <= MAX_BATCH_BYTES for call in fake.calls)
    assert fake.delivered == [_line(e) for e in events]


def test_failed_records_are_retried_alone_with_growing_backoff():
    # GIVEN Firehose refuses user-1 once and user-3 twice
    fake = FakeFirehose(fail={"user-1": 1, "user-3": 2})
    sleeps: list[float] = []
    events = [_event(n) for n in range(5)]
    # WHEN the sink puts five events with three attempts
    FirehoseSink(STREAM, client=fake, max_attempts=3, sleep=sleeps.append).put(events)
    # THEN only the refused records are sent again, and everything arrives once
    assert [len(call) for call in fake.calls] == [5, 2, 1]
    assert fake.calls[1] == [_line(events[1]), _line(events[3])]
    assert sorted(fake.delivered) == sorted(_line(e) for e in events)
    assert len(sleeps) == 2
    assert 0 < sleeps[0] < sleeps[1]


def test_records_still_failing_go_to_the_dead_letter_queue(dlq, caplog):
    # GIVEN Firehose (stubbed) refuses one record of three on every attempt
    sqs, url = dlq
    firehose = boto3.client("firehose", region_name="us-east-1")
    events = [_event(n) for n in range(3)]
    lines = [_line(e) for e in events]
    refused = {
        "FailedPutCount": 1,
        "RequestResponses": [
            {"RecordId": "a"},
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "busy"},
            {"RecordId": "c"},
        ],
    }
    still_refused = {
        "FailedPutCount": 1,
        "RequestResponses": [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "busy"}],
    }
    sink = FirehoseSink(
        STREAM,
        client=firehose,
        dead_letter_queue_url=url,
        sqs_client=sqs,
        max_attempts=3,
        sleep=lambda seconds: None,
    )
    with Stubber(firehose) as stubber:
        stubber.add_response(
            "put_record_batch",
            refused,
            {"DeliveryStreamName": STREAM, "Records": [{"Data": d} for d in lines]},
        )
        for _ in range(2):
            stubber.add_response(
                "put_record_batch",
                still_refused,
                {"DeliveryStreamName": STREAM, "Records": [{"Data": lines[1]}]},
            )
        # WHEN the sink puts them
        with caplog.at_level(logging.ERROR, logger="abtest"):
            sink.put(events)
        stubber.assert_no_pending_responses()
    # THEN exactly the refused record is in the queue, as its line, with the error code
    messages = _drain(sqs, url)
    assert len(messages) == 1
    assert messages[0]["Body"] == lines[1].decode()
    attributes = messages[0]["MessageAttributes"]
    assert attributes["ErrorCode"]["StringValue"] == "ServiceUnavailableException"
    assert attributes["DeliveryStreamName"]["StringValue"] == STREAM
    assert attributes["Delivery"]["StringValue"] == "refused"  # never reached the log
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_throttled_call_fails_all_its_records_into_the_queue(dlq):
    sqs, url = dlq
    fake = FakeFirehose(raise_code="ThrottlingException")
    events = [_event(n) for n in range(25)]
    sink = FirehoseSink(
        STREAM, client=fake, dead_letter_queue_url=url, sqs_client=sqs, sleep=lambda s: None
    )
    sink.put(events)
    assert len(fake.calls) == 3  # every attempt, then the queue
    messages = _drain(sqs, url)
    assert sorted(m["Body"] for m in messages) == sorted(_line(e).decode() for e in events)
    assert {m["MessageAttributes"]["ErrorCode"]["StringValue"] for m in messages} == {
        "ThrottlingException"
    }


class AnswerLost(FakeFirehose):
    """Takes the records, then the answer never arrives (or arrives as `error`)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict]) -> dict:
        super().put_record_batch(DeliveryStreamName, Records)
        raise self.error


def _server_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutRecordBatch",
    )


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://firehose"),
        ConnectionClosedError(endpoint_url="https://firehose"),
        _server_error("InternalFailure", 500),
    ],
    ids=["read-timeout", "connection-closed", "internal-failure"],
)
def test_records_whose_answer_was_lost_are_not_sent_again_but_parked_as_uncertain(dlq, error):
    """Sending them again would log them twice if Firehose took them the first time."""
    sqs, url = dlq
    fake = AnswerLost(error)
    events = [_event(n) for n in range(3)]
    sink = FirehoseSink(
        STREAM, client=fake, dead_letter_queue_url=url, sqs_client=sqs, sleep=lambda s: None
    )

    sink.put(events)

    assert len(fake.calls) == 1
    messages = _drain(sqs, url)
    assert sorted(m["Body"] for m in messages) == sorted(_line(e).decode() for e in events)
    assert {m["MessageAttributes"]["Delivery"]["StringValue"] for m in messages} == {"uncertain"}


def test_throttling_answers_are_retried_since_nothing_was_taken(dlq):
    sqs, url = dlq
    fake = AnswerLost(_server_error("ServiceUnavailableException", 503))
    sink = FirehoseSink(
        STREAM, client=fake, dead_letter_queue_url=url, sqs_client=sqs, sleep=lambda s: None
    )

    sink.put([_event(1)])

    assert len(fake.calls) == 3
    messages = _drain(sqs, url)
    assert [m["MessageAttributes"]["Delivery"]["StringValue"] for m in messages] == ["refused"]


def test_without_a_queue_each_undelivered_event_is_logged_whole(caplog):
    fake = FakeFirehose(fail={"user-0": None, "user-2": None})
    events = [_event(n) for n in range(3)]
    with (
        caplog.at_level(logging.ERROR, logger="abtest"),
        pytest.raises(EventLogUnavailableError, match="neither Firehose"),
    ):
        FirehoseSink(STREAM, client=fake, sleep=lambda s: None).put(events)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    for event, message in zip([events[0], events[2]], errors, strict=True):
        assert _line(event).decode().strip() in message
        assert "ServiceUnavailableException" in message


def test_when_the_queue_fails_too_the_events_are_logged(fake_aws, caplog):
    sqs = boto3.client("sqs", region_name="us-east-1")
    missing_queue = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    fake = FakeFirehose(raise_code="ServiceUnavailableException")
    events = [_event(n) for n in range(12)]
    sink = FirehoseSink(
        STREAM,
        client=fake,
        dead_letter_queue_url=missing_queue,
        sqs_client=sqs,
        sleep=lambda s: None,
    )
    with (
        caplog.at_level(logging.ERROR, logger="abtest"),
        pytest.raises(EventLogUnavailableError, match="neither Firehose"),
    ):
        sink.put(events)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == len(events)
    for event in events:
        assert sum(_line(event).decode().strip() in m for m in errors) == 1


class PartlyFailingSqs:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        first, *rest = Entries
        self.sent += [e["MessageBody"] for e in rest]
        failed = {"Id": first["Id"], "Code": "InternalError", "SenderFault": False}
        return {"Successful": [{"Id": e["Id"]} for e in rest], "Failed": [failed]}


def test_messages_the_queue_refuses_are_logged_and_the_rest_are_queued(caplog):
    fake = FakeFirehose(raise_code="ServiceUnavailableException")
    sqs = PartlyFailingSqs()
    events = [_event(n) for n in range(3)]
    sink = FirehoseSink(
        STREAM, client=fake, dead_letter_queue_url="q", sqs_client=sqs, sleep=lambda s: None
    )
    with (
        caplog.at_level(logging.ERROR, logger="abtest"),
        pytest.raises(EventLogUnavailableError, match="neither Firehose"),
    ):
        sink.put(events)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sqs.sent == [_line(e).decode() for e in events[1:]]
    assert len(errors) == 1
    assert _line(events[0]).decode().strip() in errors[0]


def test_a_record_too_large_for_firehose_does_not_sink_the_others(caplog):
    fake = FakeFirehose()
    huge = _event(0, predictions="x" * MAX_RECORD_BYTES)
    small = [_event(1), _event(2)]
    with (
        caplog.at_level(logging.ERROR, logger="abtest"),
        pytest.raises(EventLogUnavailableError, match="neither Firehose"),
    ):
        FirehoseSink(STREAM, client=fake, sleep=lambda s: None).put([huge, *small])
    assert fake.delivered == [_line(e) for e in small]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "RecordTooLarge" in errors[0]
    assert '"user_id":"user-0"' in errors[0]
