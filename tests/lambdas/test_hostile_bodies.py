"""Bodies that used to crash the handlers get a JSON 4xx naming the body, on Lambda (moto).

Before, these raised out of the handler: API Gateway answers that with a bare 500 and
the function-error alarm fires.
"""

from __future__ import annotations

import json

import pytest

from tests.api_gateway import Context, api_event, call
from tests.hostile_bodies import hostile_bodies
from tests.lambdas.doubles import ENDPOINT, create_endpoint, state_change

HOSTILE = hostile_bodies(ENDPOINT)


@pytest.fixture
def api(aws):
    create_endpoint({"ab-testing:strategy": "ThompsonSampling"})
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    return aws


def event_with(route: str, content_type: str, body: str) -> dict:
    event = api_event(f"/{route}", body)
    event["headers"] = {"Content-Type": content_type}
    event["multiValueHeaders"] = {"Content-Type": [content_type]}
    return event


@pytest.mark.parametrize("route", ["invocation", "conversion", "stats"])
def test_every_hostile_body_is_a_json_4xx_naming_the_body(api, route: str) -> None:
    """All cases against one moto environment: a refused body changes no state, and a
    fresh environment per case cost a second each."""
    wrong = {}
    for case, (content_type, body) in HOSTILE.items():
        status, answer = call(getattr(api, route), event_with(route, content_type, body))
        shaped = isinstance(answer, dict) and set(answer) == {"error", "message", "details"}
        if not (
            status in (400, 415) and shaped and [d["field"] for d in answer["details"]] == ["body"]
        ):
            wrong[case] = (status, answer)

    assert wrong == {}
    assert api.runtime.calls == []  # refused before any model was called


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_is_a_415_in_the_documented_shape(api, content_type) -> None:
    event = event_with("stats", content_type, json.dumps({"endpoint_name": ENDPOINT}))

    status, answer = call(api.stats, event)

    assert status == 415
    assert answer["error"] == "unsupported_media_type"
    assert content_type in answer["message"] and "application/json" in answer["message"]
    assert answer["details"][0]["field"] == "body"


@pytest.mark.parametrize(
    "content_type", ["application/JSON", "Application/Json; charset=UTF-8", "application/json"]
)
def test_media_types_are_case_insensitive(api, content_type: str) -> None:
    event = event_with("stats", content_type, json.dumps({"endpoint_name": ENDPOINT}))

    status, answer = call(api.stats, event)

    assert status == 200, answer
    assert answer["endpoint_name"] == ENDPOINT


def test_a_doubled_slash_is_an_unknown_path_not_a_wrong_method(api) -> None:
    status, answer = call(api.invocation, api_event("//invocation", {"endpoint_name": ENDPOINT}))

    assert status == 404
    assert "//invocation" in answer["message"]


@pytest.mark.parametrize(
    ("route", "field", "value"),
    [
        ("invocation", "content_type", "text/csv; charset=ütf-8"),
        ("invocation", "inference_id", "réf-1"),
        ("conversion", "inference_id", "réf-1"),
    ],
)
def test_header_fields_must_be_printable_ascii(api, route: str, field: str, value: str) -> None:
    body = {"endpoint_name": ENDPOINT, "user_id": "u", "data": "x", field: value}

    status, answer = call(getattr(api, route), api_event(f"/{route}", body))

    assert status == 400, answer
    assert [d["field"] for d in answer["details"]] == [field]
    assert api.runtime.calls == []


def test_a_bug_is_a_logged_json_500_not_an_unhandled_exception(api, monkeypatch, caplog) -> None:
    def broken(endpoint_name):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.stats.use_case.store, "get_endpoint", broken)

    status, answer = call(api.stats, api_event("/stats", {"endpoint_name": ENDPOINT}))

    assert status == 500
    assert answer == {
        "error": "internal_error",
        "message": "internal error; see the log",
        "details": [],
    }
    assert "RuntimeError: a bug" in caplog.text
