"""Slow and idle clients over real sockets on 127.0.0.1: none can hold the server or fill its log.

Bounded: at most 1,100 sockets, and every wait has a deadline of a few seconds.
"""

from __future__ import annotations

import json
import random
import resource
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from abtest.embedded import connections, server
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.embedded.helpers import ABTEST, REPO, write_config


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes `sock` within `seconds`, while one byte of `trickle` is
    sent every 0.2 s (a client dribbling its request head)."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    for byte in [trickle[i : i + 1] for i in range(len(trickle))] or [b""] * 10**6:
        if time.monotonic() > deadline:
            return False
        try:
            if byte:
                sock.sendall(byte)
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            return True
    return False


@pytest.fixture
def quick_deadlines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(connections, "HEADER_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(server, "BODY_TIMEOUT_SECONDS", 1.0)
    runtime = Runtime(write_config(tmp_path), tmp_path / "data", rng=random.Random(0))
    with EmbeddedServer(runtime) as served:
        yield served


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def test_a_request_head_dribbled_byte_by_byte_is_cut_off(quick_deadlines) -> None:
    # GIVEN a client sending its request head one byte every 0.2 s, for 8 s in all
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
    with socket.create_connection(address(quick_deadlines.url)) as sock:
        # THEN the server closes the connection at its 1 s head deadline
        assert closed_within(sock, 4.0, trickle=head)


def test_a_connection_that_never_sends_is_closed(quick_deadlines) -> None:
    with socket.create_connection(address(quick_deadlines.url)) as sock:
        assert closed_within(sock, 4.0)


def test_a_body_that_does_not_arrive_is_a_408(quick_deadlines) -> None:
    # GIVEN a request announcing 100 bytes of body and sending 10
    head = b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(address(quick_deadlines.url), timeout=5) as sock:
        sock.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"endpoint')
        # THEN the answer, at the 1 s body deadline, is a 408 in the documented shape
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"] == "request_timeout"
    assert json.loads(body)["details"] == [] or "body" in json.loads(body)["message"]


@pytest.mark.slow  # an `abtest serve` process and 1,100 sockets
def test_a_thousand_idle_connections_neither_lock_out_clients_nor_fill_the_log(
    tmp_path: Path,
) -> None:
    # GIVEN abtest serve limited to 1,024 file descriptors, as many hosts are by default
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [*ABTEST, "serve", "--config", str(write_config(tmp_path)), "--port", "0",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)),
    )  # fmt: skip
    idle: list[socket.socket] = []
    try:
        url = process.stdout.readline().split(" on ")[1].split()[0]
        # WHEN 1,100 connections are opened and left idle
        for _ in range(1100):
            idle.append(socket.create_connection(address(url), timeout=10))
        # THEN a new client is still answered at once
        began = time.monotonic()
        response = httpx.get(f"{url}/health", timeout=5)
        assert response.status_code == 200
        assert time.monotonic() - began < 4
    finally:
        for sock in idle:
            sock.close()
        process.terminate()
        process.wait(timeout=30)
    # AND the log holds no traceback (before: one per failed accept, megabytes a second)
    log.seek(0)
    text = log.read()
    assert "Traceback" not in text
    assert len(text) < 2_000, text[:2_000]
