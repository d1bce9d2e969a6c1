"""The response head waits for its body: one write per answer, the same bytes, nothing lost."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from abtest.embedded.connections import Corked
from tests.embedded.helpers import RecordingTransport


def test_head_and_body_go_out_in_one_write() -> None:
    transport, cycle = RecordingTransport(), SimpleNamespace(response_started=False)
    corked = Corked(transport, cycle)
    corked.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response: passes through
    cycle.response_started = True
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    corked.write(b"{}")
    corked.write(b"")  # the end of the message: nothing more
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b""]
    assert not corked.is_closing()  # everything else is the transport's


def test_closing_writes_a_held_head_first() -> None:
    transport, cycle = RecordingTransport(), SimpleNamespace(response_started=True)
    corked = Corked(transport, cycle)
    corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
    corked.close()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    assert transport.closed


def test_keep_alive_answers_are_whole_over_a_raw_socket(start_server) -> None:
    """Three requests on one connection, each answered whole (head and body) in order."""
    server = start_server()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            head, _, body = head.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += sock.recv(65536)
            assert body.startswith(b'{"status": "ok"')
