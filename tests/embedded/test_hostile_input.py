"""Bodies, media types and paths that used to crash or mislead the embedded server.

Each got a 500 (or a 415 off the documented shape, or a 405 for a POST, or a logged
text/plain 400, or was served from a body received in part) before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sqlite3

import httpx
import pytest

from abtest.embedded.wiring import STORE_NAME
from tests.embedded.helpers import ENDPOINT, logged_events
from tests.hostile_bodies import hostile_bodies

HOSTILE = hostile_bodies(ENDPOINT)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import random

    from abtest.embedded.server import EmbeddedServer
    from abtest.embedded.wiring import Runtime
    from tests.embedded.helpers import write_config

    folder = tmp_path_factory.mktemp("hostile")
    runtime = Runtime(write_config(folder), folder / "data", rng=random.Random(0))
    with EmbeddedServer(runtime) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("route", ["invocation", "conversion", "stats"])
def test_a_hostile_body_is_a_json_4xx_naming_the_body(served, route: str, case: str) -> None:
    content_type, body = HOSTILE[case]
    headers = {"content-type": content_type}

    response = served.post(f"/{route}", content=body.encode(), headers=headers)

    assert response.status_code in (400, 415), response.text
    answer = response.json()
    assert set(answer) == {"error", "message", "details"}
    assert [d["field"] for d in answer["details"]] == ["body"]


def test_a_body_that_is_not_json_is_a_415_in_the_documented_shape(served) -> None:
    body = json.dumps({"endpoint_name": ENDPOINT}).encode()

    response = served.post("/stats", content=body, headers={"content-type": "text/plain"})

    assert response.status_code == 415
    assert response.json() == {
        "error": "unsupported_media_type",
        "message": "body: Content-Type 'text/plain' is not supported; send application/json",
        "details": [
            {
                "field": "body",
                "message": "Content-Type 'text/plain' is not supported; send application/json",
            }
        ],
    }


@pytest.mark.parametrize("content_type", ["application/JSON", "APPLICATION/json; charset=utf-8"])
def test_media_types_are_case_insensitive(served, content_type: str) -> None:
    body = json.dumps({"endpoint_name": ENDPOINT}).encode()

    response = served.post("/stats", content=body, headers={"content-type": content_type})

    assert response.status_code == 200, response.text
    assert response.json()["endpoint_name"] == ENDPOINT


def test_a_doubled_slash_is_an_unknown_path_not_a_wrong_method(served) -> None:
    url = f"{str(served.base_url).rstrip('/')}//invocation"  # base_url would fold the slashes

    response = served.post(url, json={"endpoint_name": ENDPOINT, "data": "x"})

    assert response.status_code == 404
    assert "//invocation" in response.json()["message"]
    assert served.get("/invocation").status_code == 405


@pytest.mark.parametrize(
    ("field", "value"), [("content_type", "text/csv; charset=ütf-8"), ("inference_id", "réf-1")]
)
def test_non_ascii_header_fields_are_a_400_for_an_http_model(
    start_server, http: httpx.Client, model_url: str, field: str, value: str
) -> None:
    # GIVEN an endpoint whose variant is a model behind HTTP (both fields become its headers)
    server = start_server(variants={"Remote": model_url})
    body = {"endpoint_name": ENDPOINT, "user_id": "u", "data": "x", field: value}

    # WHEN the field is not printable ASCII
    response = http.post(f"{server.url}/invocation", json=body)

    # THEN the client is told which field, instead of a 500
    assert response.status_code == 400, response.text
    assert [d["field"] for d in response.json()["details"]] == [field]


@pytest.mark.parametrize("headers", [{"content-type": "application/json"}, {}])
def test_a_body_that_is_not_json_says_what_to_send(served, headers: dict[str, str]) -> None:
    response = served.post("/stats", content=b"endpoint_name=x", headers=headers)

    assert response.status_code == 400
    assert response.json()["details"] == [
        {
            "field": "body",
            "message": "not JSON: send a JSON object with Content-Type: application/json",
        }
    ]


INVOCATION = json.dumps(
    {"endpoint_name": ENDPOINT, "user_id": "cut-short", "data": {"instances": ["great"]}}
).encode()
HEAD = b"POST /invocation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
CUT_SHORT = {
    # A whole JSON object in the first chunk, then a chunk header that is not hex: the
    # server refuses the request, but its handler had the first chunk.
    "a malformed chunk after a whole object": (
        HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\nzz\r\n" % (len(INVOCATION), INVOCATION)
    ),
    # The client goes away before sending the rest of what it announced.
    "a Content-Length longer than what comes": (
        HEAD + b"Content-Length: %d\r\n\r\n%s" % (len(INVOCATION) + 10, INVOCATION)
    ),
}


@pytest.mark.parametrize("case", CUT_SHORT)
def test_a_request_whose_body_never_ends_is_not_served(start_server, case: str) -> None:
    server = start_server()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(CUT_SHORT[case])
        client.shutdown(socket.SHUT_WR)
        while client.recv(4096):  # whatever the server answers, until it closes
            pass

    server.stop()  # waits for the request's handler, then seals the event log

    with sqlite3.connect(server.runtime.data_dir / STORE_NAME) as db:
        assert db.execute("SELECT user_id FROM assignments").fetchall() == []
    assert logged_events(server.runtime.data_dir) == []


STATS = json.dumps({"endpoint_name": ENDPOINT}).encode()
# Requests HTTP/1.1 cannot read, and the part at fault: uvicorn answered each with a
# text/plain "Invalid HTTP request received." and logged a warning per request.
UNREADABLE = {
    "a negative length": (
        "Content-Length",
        b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
    ),
    "an unknown coding": (
        "Transfer-Encoding",
        b"POST /stats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    ),
    "a chunk size not in hex": (
        "body",
        b"POST /stats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ),
    "no Host": (
        "Host",
        b"POST /stats HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(STATS), STATS),
    ),
    "a byte not allowed in the path": ("request", b"POST /st\xffats HTTP/1.1\r\nHost: x\r\n\r\n"),
    "a head over 16 KiB": ("request", b"POST /stats HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20_000),
}


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logging_server(start_server):
    """A server, and what uvicorn's protocol logs from then on (uvicorn's logging config,
    applied as a server starts, drops earlier handlers; its logger does not propagate)."""
    server = start_server()
    logger, kept = logging.getLogger("uvicorn.error"), _Kept()
    logger.addHandler(kept)
    yield server, kept.messages
    logger.removeHandler(kept)


def exchange(server, request: bytes) -> bytes:
    """What the server answers `request` with, until it closes the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(request)
        with contextlib.suppress(ConnectionResetError):  # closed with bytes left unread
            while chunk := client.recv(4096):
                answer += chunk
    return answer


@pytest.mark.parametrize("case", UNREADABLE)
def test_a_request_http_cannot_read_is_a_json_400_naming_the_part_and_not_logged(
    logging_server, case: str
) -> None:
    server, logged = logging_server
    part, request = UNREADABLE[case]

    head, _, body = exchange(server, request).partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    answer = json.loads(body)
    assert set(answer) == {"error", "message", "details"}
    assert [d["field"] for d in answer["details"]] == [part]
    assert answer["message"].startswith(f"{part}: ")
    assert logged == []


def test_an_upgrade_to_another_protocol_is_served_as_http_and_not_logged(
    logging_server,
) -> None:
    server, logged = logging_server
    upgrade = b"Connection: Upgrade, close\r\nUpgrade: websocket\r\n"
    request = b"POST /stats HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s"

    answer = exchange(server, request % (upgrade, len(STATS), STATS))

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert logged == []


def post_stats(target: bytes = b"/stats", method: bytes = b"POST", framing: bytes = b"") -> bytes:
    framing = framing or b"Content-Length: %d\r\n\r\n%s" % (len(STATS), STATS)
    return b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s" % (method, target, framing)


# Readable HTTP in less common forms: each the request it spells, answered as such.
ODD_BUT_READABLE = {
    "a body in chunks": (
        post_stats(
            framing=b"Transfer-Encoding: chunked\r\n\r\n3\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (STATS[:3], len(STATS) - 3, STATS[3:])
        ),
        200,
    ),
    "a query string of bad escapes": (post_stats(b"/stats?a=%ZZ&%ff=%00"), 200),
    "PUT": (post_stats(method=b"PUT"), 405),
    "DELETE": (post_stats(method=b"DELETE"), 405),
    "OPTIONS": (post_stats(method=b"OPTIONS"), 405),
    "a path of 10,000 characters": (post_stats(b"/" + b"a" * 10_000), 404),
}


@pytest.mark.parametrize("case", ODD_BUT_READABLE)
def test_readable_http_in_a_less_common_form_is_answered_as_what_it_spells(
    logging_server, case: str
) -> None:
    server, logged = logging_server
    request, status = ODD_BUT_READABLE[case]

    head, _, body = exchange(server, request).partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 %d " % status), head
    answer = json.loads(body)
    if status == 200:
        assert answer["endpoint_name"] == ENDPOINT
    else:
        assert set(answer) == {"error", "message", "details"}
    if status == 405:
        assert b"\r\nallow: POST" in head
    assert logged == []
