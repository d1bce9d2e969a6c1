"""A 200 JSON answer written whole by the connection: the bytes and the connection's state
are those of the two ASGI messages through h11, and every other case is left to them.

Two guarded connections, each fed the same requests: on one the app answers through the
connection's `WHOLE_ANSWER` when offered, on the other always with the two messages."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import h11
import pytest
import uvicorn
from uvicorn.server import ServerState

from abtest.embedded import connections
from abtest.embedded.connections import WHOLE_ANSWER, guarded_protocol
from tests.embedded.helpers import RecordingTransport

BODY = b'{"endpoint_name":"e","predictions":[1]}'
DATE = (b"date", b"Mon, 07 Dec 2026 13:00:00 GMT")


def _run(coroutine: Any) -> Any:
    """`asyncio.run` on a thread of its own: in a worker where the browser tests ran, the
    session's Playwright keeps an event loop running on the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _app(use_whole: bool, taken: list[bool], status: int = 200):
    async def app(scope: dict, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        whole = scope.get("extensions", {}).get(WHOLE_ANSWER)
        if use_whole and status == 200 and whole is not None and whole(BODY):
            taken.append(True)
            return
        taken.append(False)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})

    return app


async def _serve(data: list[bytes], use_whole: bool) -> tuple[bytes, list[bool], tuple, bool]:
    """What one connection writes for `data` (fed in these pieces), whether each answer was
    written whole, the h11 connection's state, and whether the transport was closed."""
    taken: list[bool] = []
    config = uvicorn.Config(
        _app(use_whole, taken),
        http=guarded_protocol(100, 10.0),
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    config.load()
    state = ServerState()
    state.default_headers = [DATE, *config.encoded_headers]
    loop = asyncio.get_running_loop()
    protocol = config.http_protocol_class(config, state, {}, _loop=loop)
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for piece in data:
        protocol.data_received(piece)
        for _ in range(20):
            await asyncio.sleep(0)
    conn = protocol.conn  # its state now, before the connection is closed below
    state = (conn.our_state, conn.their_state, conn._cstate.keep_alive)
    io = (type(conn._writer), type(conn._reader), conn.their_http_version)
    result = (b"".join(transport.writes), taken, (state, io), transport.closed)
    protocol.connection_lost(None)
    return result


def _post(extra: bytes = b"", method: bytes = b"POST", version: bytes = b"1.1") -> bytes:
    body = b'{"endpoint_name": "e"}'
    head = b"Host: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return method + b" /invocation HTTP/" + version + b"\r\n" + head + extra + b"\r\n" + body


CASES = {
    "one request": ([_post()], True),
    "keep-alive, three in turn": ([_post(), _post(), _post()], True),
    "two pipelined in one read": ([_post() + _post()], True),
    "the body in a second read": ([_post()[:-5], _post()[-5:]], True),
    "connection: close": ([_post(b"Connection: close\r\n")], False),
    "HTTP/1.0": ([_post(version=b"1.0")], False),
    "HEAD": ([b"HEAD /invocation HTTP/1.1\r\nHost: x\r\n\r\n"], False),
    "an upgrade proposed": ([_post(b"Connection: upgrade\r\nUpgrade: foo\r\n")], False),
    "expect 100-continue": ([_post(b"Expect: 100-continue\r\n")], True),
}


@pytest.mark.parametrize("name", CASES)
def test_same_bytes_and_state_as_the_two_messages(name: str) -> None:
    data, whole_expected = CASES[name]

    async def both() -> tuple:
        return await _serve(data, use_whole=True), await _serve(data, use_whole=False)

    (whole_bytes, taken, whole_conn, whole_closed), (bytes_, _, conn, closed) = _run(both())
    assert whole_bytes == bytes_
    assert bytes_.count(b"HTTP/1.1 200 OK\r\n") == len(taken) > 0
    assert all(taken) if whole_expected else not any(taken)
    assert whole_conn == conn
    assert whole_closed == closed


def test_the_answer_is_framed_as_h11_frames_it() -> None:
    """A client's h11 reads the answers back: status, headers and body, and the
    connection ready for the next request."""
    data = [_post(), _post()]
    written, taken, _, _ = _run(_serve(data, use_whole=True))
    assert taken == [True, True]
    client = h11.Connection(h11.CLIENT)
    client.receive_data(written)
    for _ in data:
        client.send(h11.Request(method="POST", target="/invocation", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        response = client.next_event()
        assert isinstance(response, h11.Response) and response.status_code == 200
        headers = dict(response.headers)
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"content-length"] == b"%d" % len(BODY)
        assert headers[b"date"] == DATE[1]
        body = client.next_event()
        assert isinstance(body, h11.Data) and body.data == BODY
        assert isinstance(client.next_event(), h11.EndOfMessage)
        client.start_next_cycle()


def test_other_statuses_go_as_two_messages() -> None:
    """Only 200 is offered to be written whole by the app; an error answer still goes out."""

    async def run() -> bytes:
        taken: list[bool] = []
        config = uvicorn.Config(
            _app(True, taken, status=404),
            http=guarded_protocol(100, 10.0),
            lifespan="off",
            access_log=False,
        )
        config.load()
        state = ServerState()
        state.default_headers = [DATE]
        protocol = config.http_protocol_class(config, state, {}, _loop=asyncio.get_running_loop())
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(_post())
        for _ in range(20):
            await asyncio.sleep(0)
        assert taken == [False]
        return b"".join(transport.writes)

    assert _run(run()).startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_not_offered_when_h11_lacks_what_it_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release of h11 or uvicorn without the internals it moves: the answers go as two
    messages, the same bytes."""
    monkeypatch.setattr(connections, "whole_answers_possible", lambda: False)
    data = [_post(), _post()]
    written, taken, _, _ = _run(_serve(data, use_whole=True))
    assert taken == [False, False]
    assert written == _run(_serve(data, use_whole=False))[0]
    monkeypatch.undo()
    assert connections.whole_answers_possible()  # the installed versions have them
