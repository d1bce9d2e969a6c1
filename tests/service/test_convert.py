from __future__ import annotations

import pytest
from service_doubles import ENDPOINT

from abtest.errors import NotFoundError, StoreUnavailableError
from abtest.http.bodies import ConversionRequest, InvocationRequest, StatsRequest


def test_conversion_credits_the_stored_assignment(service, log):
    invoked = service.invoke(InvocationRequest(endpoint_name=ENDPOINT, user_id="u", data="x"))

    converted = service.convert(
        ConversionRequest(endpoint_name=ENDPOINT, user_id="u", inference_id=invoked.inference_id)
    )

    assert converted.endpoint_variant == invoked.target_variant
    assert converted.reward == 1.0
    assert converted.duplicate is False
    conversion = log.events[-1]
    assert conversion["type"] == "conversion"
    assert conversion["variant_name"] == invoked.target_variant
    assert conversion["reward"] == 1.0


def test_conversion_without_assignment_is_404_never_a_fresh_pick(service, store, log, clock):
    with pytest.raises(NotFoundError, match="user_id"):
        service.convert(ConversionRequest(endpoint_name=ENDPOINT, user_id="stranger"))

    assert log.events == []
    assert store.store.get_assignment(ENDPOINT, "stranger", clock.now()) is None


def test_repeated_conversion_is_reported_duplicate_and_logged_once(service, log):
    service.invoke(InvocationRequest(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = ConversionRequest(
        endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1", reward=0.5
    )

    first, second = service.convert(request), service.convert(request)

    assert (first.duplicate, second.duplicate) == (False, True)
    assert [e["type"] for e in log.events] == ["invocation", "conversion"]
    assert log.events[-1]["reward"] == 0.5


def test_conversion_posting_back_a_whole_invocation_response(service):
    """The article's clients post the invocation response back; extra fields are ignored."""
    invoked = service.invoke(InvocationRequest(endpoint_name=ENDPOINT, user_id="u", data="x"))

    converted = service.convert(ConversionRequest.model_validate(invoked.model_dump()))

    assert converted.endpoint_variant == invoked.target_variant
    assert converted.inference_id == invoked.inference_id


def test_conversion_on_unknown_endpoint_is_404(service):
    with pytest.raises(NotFoundError, match="endpoint_name"):
        service.convert(ConversionRequest(endpoint_name="nope", user_id="u"))


# -- a failure between the event and the marker loses nothing and counts nothing twice --


def converted_total(service) -> int:
    stats = service.stats(StatsRequest(endpoint_name=ENDPOINT))
    return sum(m.conversion_count for m in stats.variant_metrics)


def aggregate_all(service, log) -> None:
    for key in list(log.objects):
        service.aggregate(log, key)


def test_a_conversion_whose_event_write_failed_is_counted_when_the_client_retries(
    service, log, monkeypatch
):
    service.invoke(InvocationRequest(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = ConversionRequest(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1")
    put = log.put

    def disk_full(events):
        monkeypatch.setattr(log, "put", put)  # fails once
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "put", disk_full)
    with pytest.raises(OSError):
        service.convert(request)

    retry = service.convert(request)
    log.deliver()
    aggregate_all(service, log)

    assert retry.duplicate is False
    assert converted_total(service) == 1


def test_a_crash_after_the_event_before_the_marker_is_counted_once(service, store, log):
    service.invoke(InvocationRequest(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = ConversionRequest(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1")
    real = store.store

    class Crash(Exception):
        pass

    def crash(*args):
        raise Crash

    real.mark_conversion_logged, mark = crash, real.mark_conversion_logged
    with pytest.raises(Crash):
        service.convert(request)
    log.deliver()  # the first event travels in one object ...
    real.mark_conversion_logged = mark

    retry = service.convert(request)
    log.deliver()  # ... the retry's in another
    aggregate_all(service, log)
    aggregate_all(service, log)  # and every object is delivered twice

    assert retry.duplicate is False
    assert [e["type"] for e in log.events].count("conversion") == 2
    assert converted_total(service) == 1


def test_a_marker_whose_response_was_lost_still_answers_and_the_repeat_is_a_duplicate(
    service, store, log
):
    service.invoke(InvocationRequest(endpoint_name=ENDPOINT, user_id="u", data="x"))
    request = ConversionRequest(endpoint_name=ENDPOINT, user_id="u", inference_id="inf-1")
    real = store.store
    mark = real.mark_conversion_logged

    def written_then_lost(*args):
        mark(*args)
        raise StoreUnavailableError("read timeout")

    real.mark_conversion_logged = written_then_lost
    first = service.convert(request)
    real.mark_conversion_logged = mark
    second = service.convert(request)
    log.deliver()
    aggregate_all(service, log)

    assert (first.duplicate, second.duplicate) == (False, True)
    assert converted_total(service) == 1
