"""Send parked work back where it failed: the two queues the AWS stack parks things in.

- Undelivered events (the Firehose sink's dead-letter queue): each message body is the
  event line exactly as Firehose would have had it; it goes to the stream named by the
  message's `DeliveryStreamName` attribute (or the one given).
- Failed aggregations (the metrics function's on-failure destination): each message holds
  the S3 notification the function could not process; it is invoked again with it.
  Aggregation is idempotent per object, so a redrive never counts an object twice.

A message is deleted only after its work was accepted; what is refused stays in the
queue and shows again after its visibility timeout.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("abtest")

BATCH = 10  # SQS ReceiveMessage and DeleteMessageBatch take at most 10
VISIBILITY_SECONDS = 120


@dataclass(slots=True)
class RedriveResult:
    sent: int = 0
    kept: int = 0
    reasons: list[str] = field(default_factory=list)


def redrive_events(
    sqs: Any, firehose: Any, queue_url: str, stream: str | None = None
) -> RedriveResult:
    """Put each undelivered event back on its Firehose stream.

    The window that cannot be closed from here: if this process dies between Firehose
    taking a batch and SQS deleting it, those events are in the stream and in the queue,
    and a second redrive logs them twice (conversions still count once; invocations would
    not). Run it once, to the end.
    """
    result = RedriveResult()
    for messages in _batches(sqs, queue_url):
        by_stream: dict[str, list[dict]] = {}
        for message in messages:
            attribute = message.get("MessageAttributes", {}).get("DeliveryStreamName", {})
            target = stream or attribute.get("StringValue")
            if not target:
                result.kept += 1
                result.reasons.append(f"{message['MessageId']}: no stream named")
                continue
            by_stream.setdefault(target, []).append(message)
        for target, batch in by_stream.items():
            response = firehose.put_record_batch(
                DeliveryStreamName=target,
                Records=[{"Data": _line(m["Body"])} for m in batch],
            )
            taken = [
                m
                for m, r in zip(batch, response["RequestResponses"], strict=True)
                if not r.get("ErrorCode")
            ]
            for m, r in zip(batch, response["RequestResponses"], strict=True):
                if r.get("ErrorCode"):
                    result.reasons.append(f"{m['MessageId']}: {r['ErrorCode']}")
            _delete(sqs, queue_url, taken)
            result.sent += len(taken)
            result.kept += len(batch) - len(taken)
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


def _batches(sqs: Any, queue_url: str):
    """Messages, 10 at a time, until the queue answers with none."""
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=BATCH,
            MessageAttributeNames=["All"],
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return
        yield messages


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
