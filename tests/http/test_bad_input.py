"""Every route answers bad input with a JSON 4xx naming the field, and stores nothing."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest

from abtest.embedded.wiring import STORE_NAME
from abtest.http.api import JSON, Api
from abtest.http.routes import ALL_ROUTES
from tests.api_gateway import api_event, call
from tests.embedded.helpers import ENDPOINT, logged_events

CASES = [
    ("invocation", {"user_id": "u", "data": "x"}, 400, "endpoint_name"),
    ("invocation", {"endpoint_name": ENDPOINT, "user_id": "u"}, 400, "data"),
    ("invocation", {"endpoint_name": ENDPOINT, "user_id": 42, "data": "x"}, 400, "user_id"),
    ("invocation", {"endpoint_name": 7, "data": "x"}, 400, "endpoint_name"),
    ("invocation", {"endpoint_name": "bad name!", "data": "x"}, 400, "endpoint_name"),
    (
        "invocation",
        {"endpoint_name": ENDPOINT, "data": "x", "content_type": 1},
        400,
        "content_type",
    ),
    ("invocation", {"endpoint_name": "unknown-endpoint", "data": "x"}, 404, "endpoint_name"),
    (
        "invocation",
        {"endpoint_name": ENDPOINT, "data": "x", "endpoint_variant": "Nope"},
        409,
        "endpoint_variant",
    ),
    ("invocation", {"endpoint_name": ENDPOINT, "data": "x", "context": [1]}, 400, "context"),
    (
        "invocation",
        {"endpoint_name": ENDPOINT, "data": "x", "context": {"age": {"years": 3}}},
        400,
        "context.age",
    ),
    (
        "invocation",
        {"endpoint_name": ENDPOINT, "data": "x", "context": {"age": None}},
        400,
        "context.age",
    ),
    (
        "invocation",
        {"endpoint_name": ENDPOINT, "data": "x", "context": {"city": "x" * 257}},
        400,
        "context.city",
    ),
    (
        "invocation",
        {"endpoint_name": ENDPOINT, "data": "x", "context": {"no spaces": 1}},
        400,
        "context.no spaces",
    ),
    (
        "invocation",
        {"endpoint_name": ENDPOINT, "data": "x", "context": {f"k{i}": i for i in range(17)}},
        400,
        "context",
    ),
    (
        "invocation",
        f'{{"endpoint_name": "{ENDPOINT}", "user_id": "u", "data": "a\\ud800"}}',
        400,
        "data",
    ),
    ("invocation", "this is not json", 400, "body"),
    ("invocation", "[1, 2, 3]", 400, "body"),
    ("invocation", None, 400, "body"),
    ("conversion", {"endpoint_name": ENDPOINT}, 400, "user_id"),
    ("conversion", {"endpoint_name": ENDPOINT, "user_id": "u", "reward": 1.5}, 400, "reward"),
    ("conversion", {"endpoint_name": ENDPOINT, "user_id": "u", "reward": -0.1}, 400, "reward"),
    ("conversion", {"endpoint_name": ENDPOINT, "user_id": "u", "reward": "1"}, 400, "reward"),
    ("conversion", {"endpoint_name": ENDPOINT, "user_id": "u", "reward": True}, 400, "reward"),
    *(
        (
            "conversion",
            f'{{"endpoint_name": "{ENDPOINT}", "user_id": "u", "reward": {v}}}',
            400,
            "reward",
        )
        for v in ("NaN", "Infinity", "-Infinity", "1e999")
    ),
    ("conversion", {"endpoint_name": ENDPOINT, "user_id": "nobody"}, 404, "user_id"),
    ("conversion", {"endpoint_name": "unknown-endpoint", "user_id": "u"}, 404, "endpoint_name"),
    ("conversion", "{", 400, "body"),
    ("stats", {}, 400, "endpoint_name"),
    ("stats", {"endpoint_name": ["a"]}, 400, "endpoint_name"),
    ("stats", {"endpoint_name": "unknown-endpoint"}, 404, "endpoint_name"),
    ("stats", "null", 400, "body"),
    ("stats", {"endpoint_name": "bad name!"}, 400, "endpoint_name"),
]
# Where a request would leave a trace: a user's assignment, a conversion marker.
TABLES = ("assignments", "conversions")


@pytest.mark.parametrize(("route", "body", "status", "field"), CASES)
def test_bad_input_names_the_field(api, route, body, status, field):
    code, response = call(getattr(api, route), api_event(f"/{route}", body))

    assert code == status, response
    assert set(response) == {"error", "message", "details"}
    assert field in response["message"]
    if status == 400:
        assert field in [d["field"] for d in response["details"]]


@pytest.mark.parametrize("route", ["invocation", "conversion", "stats"])
def test_oversized_body_is_413(api, route):
    code, response = call(getattr(api, route), api_event(f"/{route}", "x" * (6 * 1024 * 1024 + 1)))

    assert code == 413
    assert response["error"] == "payload_too_large"


@pytest.mark.parametrize("route", ["invocation", "conversion", "stats"])
def test_wrong_method_is_405_and_unknown_path_404(api, route):
    module = getattr(api, route)

    assert call(module, api_event(f"/{route}", None, method="GET"))[0] == 405
    code, response = call(module, api_event("/nowhere", {}))
    assert code == 404 and "/nowhere" in response["message"]


def test_bad_input_stores_nothing(api, runtime):
    for route, body, _, _ in CASES:
        call(getattr(api, route), api_event(f"/{route}", body))

    with sqlite3.connect(runtime.data_dir / STORE_NAME) as db:
        stored = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES]
    assert stored == [0, 0]
    assert logged_events(runtime.data_dir) == []


def test_base64_body_that_is_not_utf8_is_400(api):
    event = api_event("/invocation", None)
    event["body"] = base64.b64encode(b"\xff\xfe{").decode()
    event["isBase64Encoded"] = True

    code, response = call(api.invocation, event)

    assert code == 400
    assert response["details"] == [{"field": "body", "message": "must be UTF-8 encoded JSON"}]


def test_base64_json_body_is_accepted(api):
    event = api_event("/stats", None)
    event["body"] = base64.b64encode(json.dumps({"endpoint_name": ENDPOINT}).encode()).decode()
    event["isBase64Encoded"] = True

    assert call(api.stats, event)[0] == 200


def test_a_request_context_is_logged_with_the_invocation_and_never_the_payload(api, runtime):
    context = {"country": "de", "age": 31, "score": 0.5, "returning": True}
    body = {"endpoint_name": ENDPOINT, "user_id": "ctx-user", "data": "secret", "context": context}
    code, _ = call(api.invocation, api_event("/invocation", body))
    plain = {"endpoint_name": ENDPOINT, "user_id": "ctx-plain", "data": "x"}
    assert code == 200 and call(api.invocation, api_event("/invocation", plain))[0] == 200

    events = {e["user_id"]: e for e in logged_events(runtime.data_dir) if e["type"] == "invocation"}
    assert events["ctx-user"]["context"] == context  # ints stay ints, booleans booleans
    assert "context" not in events["ctx-plain"]  # no context: the line as before
    assert not any("secret" in json.dumps(e) for e in events.values())


# Events as API Gateway may send them: fields null or empty, a body flagged base64 that
# is not (answered as they were; the empty Content-Type as the server answers it).
SPARSE_EVENTS = {
    "no headers": (dict(headers=None, multiValueHeaders=None), 200),
    "no query string": (
        dict(queryStringParameters=None, multiValueQueryStringParameters=None),
        200,
    ),
    "no path parameters": (dict(pathParameters=None), 200),
    "no identity": (dict(requestContext={"identity": None}), 200),
    "no httpMethod": (dict(httpMethod=None), 405),
    "no path": (dict(path=None), 404),
    "a base64 body that is not base64": (dict(body="{not base64}", isBase64Encoded=True), 400),
    "an empty Content-Type, as the server reads it": (
        dict(headers={"Content-Type": ""}, multiValueHeaders={"Content-Type": [""]}),
        415,
    ),
}
# Events API Gateway does not send but a direct invocation of a function can: each field of
# another type is read as missing (a body that is not text is a 400). Each was a logged 500
# before, or raised out of the adapter (a Lambda error, no answer).
ODD_EVENTS = {
    "a body that is an object": (dict(body={"endpoint_name": ENDPOINT}), 400),
    "a base64 body that is a number": (dict(body=5, isBase64Encoded=True), 400),
    "headers that are a list": (dict(headers=["x"], multiValueHeaders="x"), 200),
    "a null Content-Type": (
        dict(headers={"Content-Type": None}, multiValueHeaders={"Content-Type": [None]}),
        200,
    ),
    "a path that is a number": (dict(path=5), 404),
    "a method that is a number": (dict(httpMethod=5), 405),
    "a requestContext that is text": (dict(requestContext="x"), 200),
}


@pytest.mark.parametrize("case", [*SPARSE_EVENTS, *ODD_EVENTS])
def test_an_event_of_another_shape_is_answered_in_the_error_shape(api, case):
    fields, status = {**SPARSE_EVENTS, **ODD_EVENTS}[case]
    event = {**api_event("/stats", {"endpoint_name": ENDPOINT}), **fields}

    code, response = call(api.stats, event)

    assert code == status, response
    if status != 200:
        assert set(response) == {"error", "message", "details"}
    if status == 400:
        assert [d["field"] for d in response["details"]] == ["body"]


def test_an_admin_route_with_a_requestcontext_of_another_shape_is_403(api):
    event = {**api_event("/admin/list", {}), "requestContext": ["x"]}

    assert call(api.list, event)[0] == 403


# Bodies no route takes, and why: each is a 400 naming body on every route, admin ones too.
NOT_AN_OBJECT = {
    "not JSON": "{endpoint_name: x}",
    "a string": '"reviews-helpfulness"',
    "a number": "7",
    "true": "true",
    "an empty body": "",
    "whitespace": " \n",
    "an object then more": "{} {}",
    "nested 10,000 deep": "[" * 10_000 + "]" * 10_000,
    "objects nested 10,000 deep": '{"a":' * 10_000 + "1" + "}" * 10_000,
    "a number beyond a float, nested": '{"x": {"y": 1e400}}',
}


@pytest.fixture(scope="module")
def every_route(runtime) -> Api:
    """Every route, application and admin, through one request path, with a caller."""
    return Api(runtime.use_cases)


@pytest.mark.parametrize("case", NOT_AN_OBJECT)
@pytest.mark.parametrize("route", ALL_ROUTES, ids=lambda route: route.name)
def test_a_body_no_route_takes_is_a_400_naming_body_on_every_route(every_route, route, case):
    answer = every_route.answer("POST", route.path, JSON, NOT_AN_OBJECT[case], "tester")

    assert answer.status == 400, answer.body
    response = json.loads(answer.body)
    assert set(response) == {"error", "message", "details"}
    assert [d["field"] for d in response["details"]] == ["body"]


# Values no request field takes: not a boolean, and no text that UTF-8 cannot encode.
NO_FIELD_TAKES = {"a boolean": True, "a lone surrogate": "\ud800"}


@pytest.mark.parametrize("value", NO_FIELD_TAKES)
@pytest.mark.parametrize(
    ("route", "field"),
    [(route, field) for route in ALL_ROUTES for field in route.request.model_fields],
    ids=lambda item: getattr(item, "name", item),
)
def test_a_value_no_field_takes_is_a_400_naming_the_field(every_route, route, field, value):
    body = json.dumps({"endpoint_name": ENDPOINT, field: NO_FIELD_TAKES[value]})

    answer = every_route.answer("POST", route.path, JSON, body, "tester")

    assert answer.status == 400, answer.body
    assert field in [d["field"] for d in json.loads(answer.body)["details"]]


def test_every_routes_rejected_bodies_store_and_log_nothing(every_route, runtime, monkeypatch):
    appended: list[object] = []  # the event log's own files move as it seals and counts
    for method in ("put", "put_lines"):
        monkeypatch.setattr(runtime.events, method, appended.append)
    for route in ALL_ROUTES:
        for body in NOT_AN_OBJECT.values():
            every_route.answer("POST", route.path, JSON, body, "tester")
        for field in route.request.model_fields:
            for value in NO_FIELD_TAKES.values():
                body = json.dumps({"endpoint_name": ENDPOINT, field: value})
                every_route.answer("POST", route.path, JSON, body, "tester")

    assert appended == []
    assert runtime.store.get_endpoint(ENDPOINT).lifecycle.version == 0
