from __future__ import annotations

import pytest

from abtest.errors import NotFoundError, StoreUnavailableError
from abtest.http.conversion_bodies import ConversionRequest
from abtest.http.invocation_bodies import InvocationResponse
from abtest.usecases.convert import Conversion
from abtest.usecases.invoke import Invocation
from tests.service.doubles import ENDPOINT


def test_conversion_credits_the_stored_assignment(usecases, log):
    invoked = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))

    converted = usecases.convert(
        Conversion(endpoint_name=ENDPOINT, user_id="u", inference_id=invoked.inference_id)
    )

    assert converted.endpoint_variant == invoked.target_variant
    assert converted.reward == 1.0
    assert converted.duplicate is False
    conversion = log.events[-1]
    assert conversion["type"] == "conversion"
    assert conversion["variant_name"] == invoked.target_variant
    assert conversion["reward"] == 1.0


def test_conversion_without_assignment_is_404_never_a_fresh_pick(usecases, store, log, clock):
    with pytest.raises(NotFoundError, match="user_id"):
        usecases.convert(Conversion(endpoint_name=ENDPOINT, user_id="stranger"))

    assert log.events == []
    assert store.store.get_assignment(ENDPOINT, "stranger", clock.now()) is None


def test_repeated_conversion_is_reported_duplicate_and_logged_once(usecases, log):
    usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = Conversion(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1", reward=0.5)

    first, second = usecases.convert(request), usecases.convert(request)

    assert (first.duplicate, second.duplicate) == (False, True)
    assert [e["type"] for e in log.events] == ["invocation", "conversion"]
    assert log.events[-1]["reward"] == 0.5


def test_conversion_posting_back_a_whole_invocation_response(usecases):
    """The article's clients post the invocation response back; extra fields are ignored."""
    invoked = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))

    converted = usecases.convert(
        ConversionRequest.model_validate(InvocationResponse.of(invoked).model_dump()).to_core()
    )

    assert converted.endpoint_variant == invoked.target_variant
    assert converted.inference_id == invoked.inference_id


def test_conversion_on_unknown_endpoint_is_404(usecases):
    with pytest.raises(NotFoundError, match="endpoint_name"):
        usecases.convert(Conversion(endpoint_name="nope", user_id="u"))


# -- a failure between the event and the marker loses nothing and counts nothing twice --


def converted_total(usecases) -> int:
    return sum(m.counts.conversion_count for m in usecases.stats(ENDPOINT).endpoint.variants)


def aggregate_all(usecases, log) -> None:
    for key in list(log.objects):
        usecases.aggregate(log, key)


def test_a_conversion_whose_event_write_failed_is_counted_when_the_client_retries(
    usecases, log, monkeypatch
):
    usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = Conversion(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1")
    put = log.put

    def disk_full(events):
        monkeypatch.setattr(log, "put", put)  # fails once
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "put", disk_full)
    with pytest.raises(OSError):
        usecases.convert(request)

    retry = usecases.convert(request)
    log.deliver()
    aggregate_all(usecases, log)

    assert retry.duplicate is False
    assert converted_total(usecases) == 1


def test_a_crash_after_the_event_before_the_marker_is_counted_once(usecases, store, log):
    usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = Conversion(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1")
    real = store.store

    class Crash(Exception):
        pass

    def crash(*args):
        raise Crash

    real.mark_conversion_logged, mark = crash, real.mark_conversion_logged
    with pytest.raises(Crash):
        usecases.convert(request)
    log.deliver()  # the first event travels in one object ...
    real.mark_conversion_logged = mark

    retry = usecases.convert(request)
    log.deliver()  # ... the retry's in another
    aggregate_all(usecases, log)
    aggregate_all(usecases, log)  # and every object is delivered twice

    assert retry.duplicate is False
    assert [e["type"] for e in log.events].count("conversion") == 2
    assert converted_total(usecases) == 1


def test_a_marker_whose_response_was_lost_still_answers_and_the_repeat_is_a_duplicate(
    usecases, store, log
):
    usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = Conversion(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1")
    real = store.store
    mark = real.mark_conversion_logged

    def written_then_lost(*args):
        mark(*args)
        raise StoreUnavailableError("read timeout")

    real.mark_conversion_logged = written_then_lost
    first = usecases.convert(request)
    real.mark_conversion_logged = mark
    second = usecases.convert(request)
    log.deliver()
    aggregate_all(usecases, log)

    assert (first.duplicate, second.duplicate) == (False, True)
    assert converted_total(usecases) == 1
