"""Tests talk to this machine only: the suite's own guard (pyproject's --allow-hosts)."""

from __future__ import annotations

import socket

import pytest
from pytest_socket import SocketConnectBlockedError


@pytest.mark.filterwarnings("ignore:A test tried to use socket")  # the guard says so too
def test_a_connection_beyond_this_machine_fails_the_test() -> None:
    # 198.51.100.1 is a documentation address (RFC 5737): nothing answers there either way.
    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("198.51.100.1", 443), timeout=1)


def test_loopback_stays_open() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname(), timeout=1):
        pass
