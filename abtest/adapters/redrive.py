"""Send parked work back where it failed: the two queues the AWS stack parks things in.

- Undelivered events (the Firehose sink's dead-letter queue): each message body is the
  event line exactly as Firehose would have had it; it is written to the event log's
  bucket directly, counted once by aggregation (see `redrive_events`).
- Failed aggregations (the metrics function's on-failure destination): each message holds
  the S3 notification the function could not process; it is invoked again with it.
  Aggregation is idempotent per object, so a redrive never counts an object twice.

A message is deleted only after its work was accepted; what is refused stays in the
queue and shows again after its visibility timeout.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from abtest.adapters.firehose import DELIVERY_ATTRIBUTE, UNCERTAIN
from abtest.adapters.s3 import S3EventArchive
from abtest.aggregation import REDRIVEN_FOLDER
from abtest.events import EVENTS_PREFIX

logger = logging.getLogger("abtest")

BATCH = 10  # SQS ReceiveMessage and DeleteMessageBatch take at most 10
CHUNK = 1000  # events per redriven object: one search and one object per chunk
VISIBILITY_SECONDS = 300  # a chunk is searched, written and deleted within this
# Firehose's longest buffering interval, and the wait after an event was parked before
# it is looked for: the longest interval, and a margin for the delivery itself.
MAX_BUFFER_SECONDS = 900
SETTLE_SECONDS = 1200
REQUEST_SECONDS = 30  # an event reaches Firehose at most this long before it is parked
CLOCK_SKEW_SECONDS = 60


@dataclass(slots=True)
class RedriveResult:
    sent: int = 0
    kept: int = 0
    already_logged: int = 0  # parked after a lost answer, but Firehose had delivered them
    reasons: list[str] = field(default_factory=list)


def redrive_events(
    sqs: Any,
    s3: Any,
    queue_url: str,
    bucket: str,
    *,
    prefix: str = EVENTS_PREFIX,
    buffer_seconds: float = MAX_BUFFER_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    now: Callable[[], float] = time.time,
) -> RedriveResult:
    """Write each parked event to the event log once, as an object of its own.

    Objects go under `<prefix>redriven/`, where the bucket notification hands them to
    aggregation like Firehose's; aggregation claims every event in them in the store, so
    one that is logged twice (a message the queue delivered twice, a run that died
    between writing an object and deleting its messages) counts once.

    An event parked because Firehose's answer was lost (`Delivery` = `uncertain`) may
    already be in the log. It is looked for, as the exact line, in the objects Firehose
    could have put it in: their folder is the hour of their oldest record's arrival, at
    most `buffer_seconds` before the event was parked, and they were written after it
    arrived. Found, its message is deleted; not found, it is written like the others.
    Such an event waits `settle_seconds` after it was parked, time enough for Firehose
    to deliver what it had buffered.
    """
    result = RedriveResult()
    for messages in _batches(sqs, queue_url, CHUNK):
        ready = []
        for message in messages:
            parked = int(message["Attributes"]["SentTimestamp"]) / 1000
            if _uncertain(message) and parked > now() - settle_seconds:
                result.kept += 1
                result.reasons.append(
                    f"{message['MessageId']}: may still reach the log through Firehose; "
                    f"run again after {settle_seconds:.0f} s"
                )
            else:
                ready.append(message)
        uncertain = [m for m in ready if _uncertain(m)]
        found = _already_logged(s3, bucket, prefix, uncertain, buffer_seconds)
        logged, missing = [], []
        for message in ready:
            delivered = _uncertain(message) and _line(message["Body"]) in found
            (logged if delivered else missing).append(message)
        if missing:
            s3.put_object(
                Bucket=bucket,
                Key=_redriven_key(prefix, now()),
                Body=b"".join(_line(m["Body"]) for m in missing),
                ContentType="application/x-ndjson",
            )
        _delete(sqs, queue_url, logged + missing)
        result.sent += len(missing)
        result.already_logged += len(logged)
    return result


def redrive_aggregations(sqs: Any, lambda_client: Any, queue_url: str) -> RedriveResult:
    """Invoke the metrics function again with each S3 notification it failed on."""
    result = RedriveResult()
    for messages in _batches(sqs, queue_url):
        done = []
        for message in messages:
            try:
                record = json.loads(message["Body"])
                function = record["requestContext"]["functionArn"]
                payload = record["requestPayload"]
            except (ValueError, KeyError, TypeError):
                result.kept += 1
                result.reasons.append(f"{message['MessageId']}: not a Lambda failure record")
                continue
            # The ARN may carry the $LATEST qualifier; the function is invoked as deployed now.
            name = function.rsplit(":", 1)[0] if function.endswith(":$LATEST") else function
            lambda_client.invoke(
                FunctionName=name, InvocationType="Event", Payload=json.dumps(payload).encode()
            )
            done.append(message)
        _delete(sqs, queue_url, done)
        result.sent += len(done)
    return result


def _batches(sqs: Any, queue_url: str, size: int = BATCH) -> Iterator[list[dict]]:
    """Messages, about `size` at a time (received 10 at a time), until the queue has none."""
    while True:
        chunk: list[dict] = []
        while len(chunk) < size:
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=BATCH,
                MessageAttributeNames=["All"],
                AttributeNames=["SentTimestamp"],
                VisibilityTimeout=VISIBILITY_SECONDS,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not messages:
                break
            chunk += messages
        if not chunk:
            return
        yield chunk


def _delete(sqs: Any, queue_url: str, messages: list[dict]) -> None:
    if not messages:
        return
    response = sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ],
    )
    for failure in response.get("Failed", []):
        logger.warning("redriven message not deleted; it will show again: %s", failure)


def _line(body: str) -> bytes:
    return body.encode() if body.endswith("\n") else body.encode() + b"\n"


def _uncertain(message: dict) -> bool:
    attribute = message.get("MessageAttributes", {}).get(DELIVERY_ATTRIBUTE, {})
    return attribute.get("StringValue") == UNCERTAIN


def _already_logged(
    s3: Any, bucket: str, prefix: str, messages: list[dict], buffer_seconds: float
) -> set[bytes]:
    """The lines of `messages` found in the Firehose objects that could hold them."""
    wanted = {_line(m["Body"]) for m in messages}
    if not wanted:
        return set()
    parked = [int(m["Attributes"]["SentTimestamp"]) / 1000 for m in messages]
    # Written after the earliest event arrived (clocks allowed CLOCK_SKEW_SECONDS apart).
    written_after = min(parked) - REQUEST_SECONDS - CLOCK_SKEW_SECONDS
    folders = sorted(
        {
            hour
            for t in parked
            for hour in _hours(t - REQUEST_SECONDS - buffer_seconds - CLOCK_SKEW_SECONDS, t)
        }
    )
    found: set[bytes] = set()
    archive = S3EventArchive(bucket, client=s3)
    for folder in folders:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}{folder}/"
        ):
            for item in page.get("Contents", []):
                if item["LastModified"].timestamp() < written_after:
                    continue
                for block in archive.read_blocks(item["Key"]):
                    found.update(wanted.intersection(block.splitlines(keepends=True)))
    return found


def _hours(start: float, end: float) -> list[str]:
    """Firehose's `yyyy/MM/dd/HH` folders (UTC) from the hour of `start` to that of `end`."""
    hour = datetime.fromtimestamp(start, UTC).replace(minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(end, UTC)
    folders = []
    while hour <= last:
        folders.append(hour.strftime("%Y/%m/%d/%H"))
        hour += timedelta(hours=1)
    return folders


def _redriven_key(prefix: str, now: float) -> str:
    moment = datetime.fromtimestamp(now, UTC)
    return f"{prefix}{REDRIVEN_FOLDER}/{moment:%Y/%m/%d/%H}/{moment:%Y%m%dT%H%M%S}-{uuid4()}.jsonl"
