"""An event in neither the event log nor its queue: conversions say so, invocations answer."""

from __future__ import annotations

import pytest

from abtest.errors import EventLogUnavailableError
from abtest.ports import Count
from abtest.usecases.convert import Conversion
from abtest.usecases.invoke import Invocation
from tests.service.doubles import ENDPOINT


@pytest.fixture
def failing_log(log, monkeypatch):
    def refuse(events):
        raise EventLogUnavailableError("1 event(s) reached neither Firehose nor its queue")

    monkeypatch.setattr(log, "put", refuse)
    monkeypatch.setattr(log, "put_lines", refuse)  # how invocations are written
    return log


def test_an_invocation_still_answers_and_the_loss_is_counted(usecases, failing_log, telemetry):
    answer = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))

    assert answer.predictions is not None
    assert telemetry.totals()[Count.UNLOGGED_INVOCATIONS] == 1


def test_a_conversion_is_a_503_so_the_client_retries_it(usecases, log, monkeypatch):
    usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = Conversion(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1")
    put = log.put

    def refuse(events):
        raise EventLogUnavailableError("1 event(s) reached neither Firehose nor its queue")

    monkeypatch.setattr(log, "put", refuse)
    with pytest.raises(EventLogUnavailableError) as raised:
        usecases.convert(request)
    assert raised.value.status == 503

    monkeypatch.setattr(log, "put", put)
    assert usecases.convert(request).duplicate is False  # not marked: the retry is logged
    assert [e["type"] for e in log.events].count("conversion") == 1
