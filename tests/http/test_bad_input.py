"""Every route answers bad input with a JSON 4xx naming the field, and stores nothing."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest

from abtest.embedded.wiring import STORE_NAME
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
