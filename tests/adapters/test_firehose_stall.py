"""A stalled Firehose and queue cost a bounded time, and the event still reaches the log."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import pytest

from abtest.adapters.firehose import FirehoseSink
from abtest.errors import EventLogUnavailableError
from abtest.events import invocation_event
from lambdas.wiring import EVENT_LOG_CLIENT


@pytest.fixture
def stalled_url() -> Iterator[str]:
    """A 127.0.0.1 port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_stalled_firehose_and_queue_end_in_the_log_well_inside_the_function_timeout(
    aws_credentials, stalled_url, caplog
):
    def client(service: str):
        return boto3.client(
            service,
            region_name="eu-west-1",
            endpoint_url=stalled_url,
            config=EVENT_LOG_CLIENT.config(),
        )

    sink = FirehoseSink(
        "abtest-events-test",
        client=client("firehose"),
        dead_letter_queue_url=f"{stalled_url}/123456789012/abtest-dlq-test",
        sqs_client=client("sqs"),
    )
    event = invocation_event(
        now=1_700_000_000,
        endpoint_name="reviews-dev",
        variant_name="Champion1",
        user_id="u1",
        inference_id="inference-stalled",
        strategy="ThompsonSampling",
        propensity=0.5,
        assignment="new",
    )

    started = time.monotonic()
    with (
        caplog.at_level(logging.ERROR, logger="abtest"),
        pytest.raises(EventLogUnavailableError),
    ):
        sink.put([event])
    took = time.monotonic() - started

    # The budget: Firehose attempts start within the 2 s deadline and each call is bounded
    # by 0.5 s connect + 1 s read; then one 1.5 s call to the queue. The API functions
    # time out at 15 s by default, and the stall used to block 25-33 s.
    assert took < 2.0 + 1.5 + 1.5 + 1.0
    (record,) = [r for r in caplog.records if "inference-stalled" in r.getMessage()]
    assert "dead-letter queue failed" in record.getMessage()
