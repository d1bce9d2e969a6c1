"""EventSink on Kinesis Data Firehose: newline-delimited JSON, batched, retried, dead-lettered.

What Firehose will not take after `max_attempts` goes to the SQS dead-letter queue; what
SQS will not take either is logged at ERROR with the whole event, so every event ends up
in Firehose, the queue, or CloudWatch Logs. Only the last case raises
EventLogUnavailableError, after the logging: the caller decides whether to answer.

A call whose answer never came (a read timeout, a dropped connection, a 5xx that is not
throttling) may have been taken: sending its records again could log them twice. They
are not retried; they go to the queue marked `Delivery: uncertain`, and the redrive
looks for them in the log before it writes them (abtest.adapters.redrive).

That must happen before the Lambda function times out, or the event is in none of the
three: `deadline_seconds` bounds the Firehose attempts (each call is bounded by the
client's own timeouts, which the wiring sets), leaving time for the queue and the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError

from abtest.errors import EventLogUnavailableError
from abtest.events import encode

logger = logging.getLogger("abtest")

# PutRecordBatch limits: 500 records and 4 MB per call, 1,000 KiB per record (before base64).
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4_000_000
MAX_RECORD_BYTES = 1000 * 1024
# SendMessageBatch limits: 10 messages and 256 KiB per message and per call (attributes
# included, hence the 1 KiB left for them).
MAX_DLQ_BATCH_MESSAGES = 10
MAX_DLQ_BYTES = 255 * 1024

# Firehose attempts stop starting after this: with the wiring's 1.5 s bound per call,
# Firehose takes at most ~3.5 s and the queue ~1.5 s, inside the API functions' timeout
# (lambdas.wiring.request_budget_seconds adds it all up).
DEFAULT_DEADLINE_SECONDS = 2.0
BASE_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 1.0

RECORD_TOO_LARGE = "RecordTooLarge"
# The dead-letter message's `Delivery` attribute: REFUSED records never reached the log,
# UNCERTAIN ones may have.
DELIVERY_ATTRIBUTE = "Delivery"
REFUSED = "refused"
UNCERTAIN = "uncertain"
# Firehose's throttling answer: the call was refused, nothing was taken.
THROTTLED = "ServiceUnavailableException"


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def _maybe_taken(exc: Exception) -> bool:
    """True when the request went out and its answer says nothing of what was done."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 and _error_code(exc) != THROTTLED
    return isinstance(exc, HTTPClientError)  # read timeout, connection closed mid-answer


def _batches(
    items: list[tuple[int, bytes]], max_count: int, max_bytes: int
) -> Iterator[list[tuple[int, bytes]]]:
    """Consecutive groups of (index, data) within both limits; each item must fit alone."""
    batch: list[tuple[int, bytes]] = []
    size = 0
    for item in items:
        if batch and (len(batch) == max_count or size + len(item[1]) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item[1])
    if batch:
        yield batch


class FirehoseSink:
    def __init__(
        self,
        delivery_stream_name: str,
        *,
        client: Any,
        dead_letter_queue_url: str | None = None,
        sqs_client: Any = None,
        max_attempts: int = 3,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """boto3 `firehose` and, with a dead-letter queue, `sqs` clients.

        No Firehose attempt starts later than `deadline_seconds` after `put` began.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if dead_letter_queue_url and sqs_client is None:
            raise ValueError("a dead-letter queue needs an sqs_client")
        self.delivery_stream_name = delivery_stream_name
        self.dead_letter_queue_url = dead_letter_queue_url
        self.max_attempts = max_attempts
        self.deadline_seconds = deadline_seconds
        self._monotonic = monotonic
        self.client = client
        self.sqs_client = sqs_client
        self._sleep = sleep

    def put(self, events: list[Mapping[str, Any]]) -> None:
        self.put_lines([encode(event) for event in events])

    def put_lines(self, lines: list[bytes]) -> None:
        records = lines  # JSON lines in S3
        # One oversized record would make Firehose reject the whole call: keep it out.
        too_large = {
            i: RECORD_TOO_LARGE for i, r in enumerate(records) if len(r) > MAX_RECORD_BYTES
        }
        pending = [(i, r) for i, r in enumerate(records) if i not in too_large]
        errors: dict[int, str] = {}
        uncertain: dict[int, str] = {}
        started = self._monotonic()
        for attempt in range(self.max_attempts):
            if attempt:
                delay = min(BASE_DELAY_SECONDS * 2 ** (attempt - 1), MAX_DELAY_SECONDS)
                if self._monotonic() - started + delay >= self.deadline_seconds:
                    break  # what is left of the budget belongs to the queue and the log
                self._sleep(delay)
            errors = {}
            for batch in _batches(pending, MAX_BATCH_RECORDS, MAX_BATCH_BYTES):
                refused, maybe_taken = self._put_batch(batch)
                errors.update(refused)
                uncertain.update(maybe_taken)
            if not errors:
                break
            pending = [(i, records[i]) for i in sorted(errors)]
        undelivered = too_large | errors | uncertain
        if undelivered:
            self._dead_letter(records, dict(sorted(undelivered.items())), set(uncertain))

    def _put_batch(self, batch: list[tuple[int, bytes]]) -> tuple[dict[int, str], dict[int, str]]:
        """Index -> error code of the records Firehose refused, and of those it may have
        taken (a call whose answer was lost: all of its records)."""
        try:
            response = self.client.put_record_batch(
                DeliveryStreamName=self.delivery_stream_name,
                Records=[{"Data": data} for _, data in batch],
            )
        except (BotoCoreError, ClientError) as exc:
            codes = {i: _error_code(exc) for i, _ in batch}
            logger.warning("Firehose PutRecordBatch failed for %d records: %s", len(batch), exc)
            return ({}, codes) if _maybe_taken(exc) else (codes, {})
        if not response.get("FailedPutCount"):
            return {}, {}
        refused = {
            i: result["ErrorCode"]
            for (i, _), result in zip(batch, response["RequestResponses"], strict=True)
            if result.get("ErrorCode")
        }
        return refused, {}

    def _dead_letter(
        self, records: list[bytes], codes: dict[int, str], uncertain: set[int]
    ) -> None:
        """Send undelivered records to the queue; log at ERROR whatever the queue does not take."""
        if self.dead_letter_queue_url is None:
            for i, code in codes.items():
                self._log_undelivered(records[i], code, "no dead-letter queue")
            self._raise_unlogged(len(codes))
        sendable = []
        only_logged = 0
        for i, code in codes.items():
            if len(records[i]) > MAX_DLQ_BYTES:
                self._log_undelivered(records[i], code, "too large for the dead-letter queue")
                only_logged += 1
            else:
                sendable.append((i, records[i]))
        queued = 0
        for batch in _batches(sendable, MAX_DLQ_BATCH_MESSAGES, MAX_DLQ_BYTES):
            refused = self._send_batch(batch, codes, uncertain)
            queued += len(batch) - len(refused)
            only_logged += len(refused)
            for i, reason in refused.items():
                self._log_undelivered(records[i], codes[i], reason)
        if queued:
            logger.warning(
                "%d events not delivered to Firehose stream %s went to the dead-letter queue",
                queued,
                self.delivery_stream_name,
            )
        if only_logged:
            self._raise_unlogged(only_logged)

    def _raise_unlogged(self, count: int) -> None:
        raise EventLogUnavailableError(
            f"{count} event(s) reached neither Firehose stream {self.delivery_stream_name} nor "
            "its dead-letter queue; they are in the function's log"
        )

    def _send_batch(
        self, batch: list[tuple[int, bytes]], codes: dict[int, str], uncertain: set[int]
    ) -> dict[int, str]:
        """Index -> reason, for the messages SQS did not take."""
        entries = [
            {
                "Id": str(i),
                # The record exactly as Firehose would have had it, so a redrive sends it as is.
                "MessageBody": data.decode(),
                "MessageAttributes": {
                    "ErrorCode": {"DataType": "String", "StringValue": codes[i]},
                    DELIVERY_ATTRIBUTE: {
                        "DataType": "String",
                        "StringValue": UNCERTAIN if i in uncertain else REFUSED,
                    },
                    "DeliveryStreamName": {
                        "DataType": "String",
                        "StringValue": self.delivery_stream_name,
                    },
                },
            }
            for i, data in batch
        ]
        try:
            response = self.sqs_client.send_message_batch(
                QueueUrl=self.dead_letter_queue_url, Entries=entries
            )
        except (BotoCoreError, ClientError) as exc:
            return {i: f"dead-letter queue failed: {_error_code(exc)}" for i, _ in batch}
        return {
            int(f["Id"]): f"dead-letter queue failed: {f.get('Code', 'unknown')}"
            for f in response.get("Failed", [])
        }

    def _log_undelivered(self, data: bytes, code: str, reason: str) -> None:
        logger.error(
            "event not delivered to Firehose stream %s (%s; %s): %s",
            self.delivery_stream_name,
            code,
            reason,
            data.decode().rstrip("\n"),
        )
