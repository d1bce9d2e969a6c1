from __future__ import annotations

import pytest

from abtest.errors import NotFoundError
from abtest.http.bodies import ConversionRequest, InvocationRequest
from tests.service.doubles import ENDPOINT


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
