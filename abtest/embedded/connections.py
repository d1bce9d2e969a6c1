"""How long and how many connections the embedded server keeps: slow or idle clients cannot hold it.

uvicorn bounds the idle time between requests (keep-alive) and the size of a request's
head, but not how long the head may take to arrive, nor how many connections stay
open. Past the process's file-descriptor limit every accept fails, the server stops
answering and asyncio logs a traceback per attempt. So here a connection must send
its request line and headers within HEADER_TIMEOUT_SECONDS, and once the server holds
its connection cap, a new connection closes the longest-idle one (one still waiting
for a request), as nginx does with keep-alive connections: idle clients can never
lock the others out. The body's deadline is the app's (`server.BODY_TIMEOUT_SECONDS`).

A response's head is held until its first body bytes and written with them (`Corked`):
one send() per answer instead of two, the same bytes on the wire.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024
MAX_CONNECTIONS = 4096
# Connections accepted per wake-up of the event loop, before any of them can be turned
# away: up to two rounds of them may be open beyond the cap for a moment.
ACCEPT_BATCH = 128
# Descriptors kept for those rounds and everything else: SQLite, event files, model clients.
RESERVED_DESCRIPTORS = 2 * ACCEPT_BATCH + 64


def connection_cap() -> int:
    """MAX_CONNECTIONS, or fewer if the descriptor limit (raised to its maximum) is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = MAX_CONNECTIONS + RESERVED_DESCRIPTORS
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(1, min(MAX_CONNECTIONS, soft - RESERVED_DESCRIPTORS))


def guarded_protocol(cap: int, header_timeout: float) -> type[H11Protocol]:
    """An h11 protocol class with a head deadline and `cap` connections, for one server."""
    # Connections waiting for a request, longest first, with their deadlines. One sweep a
    # second closes the late ones: a timer per request would cost more than the request.
    waiting: dict[Guarded, float] = {}
    sweeping: list[asyncio.TimerHandle] = []

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection, deadline in list(waiting.items()):
            if deadline > now:
                break  # the rest came later
            connection.evict()
        sweeping[:] = [loop.call_later(1.0, sweep, loop)] if waiting else []

    class Guarded(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._wait_for_request()
            if len(self.connections) > cap:
                # This one, if every other connection is busy; never logged: under a flood
                # of connections the log would be the next thing to fill up.
                next(iter(waiting)).evict()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's head arrived
                waiting.pop(self, None)
                # Its task has not run yet: it writes through the cork from the start.
                self.cycle.transport = Corked(self.transport, self.cycle)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait_for_request()

        def connection_lost(self, exc: Exception | None) -> None:
            waiting.pop(self, None)
            super().connection_lost(exc)

        def evict(self) -> None:
            waiting.pop(self, None)
            self.transport.close()

        def _wait_for_request(self) -> None:
            waiting.pop(self, None)
            waiting[self] = self.loop.time() + header_timeout  # newest last
            if not sweeping:
                sweeping.append(self.loop.call_later(1.0, sweep, self.loop))

    return Guarded


class Corked:
    """A request's view of its connection's transport: the response head waits for the body.

    uvicorn writes the status line and headers when the app sends `http.response.start`
    and the body at `http.response.body`: two send() calls, two TCP segments and two
    wake-ups of the client for every answer. Held here, the head goes out with the first
    body bytes in one write. Anything written before the response starts (`100
    Continue`) passes through, and closing first writes a held head, as before.
    """

    __slots__ = ("_cycle", "_head", "_held", "_transport")

    def __init__(self, transport: Any, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head = True  # the response's first write (its head) is still to come
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._head and self._cycle.response_started:
            self._head = False
            self._held = data
            return
        if self._held:
            data, self._held = self._held + data, b""
        self._transport.write(data)

    def close(self) -> None:
        if self._held:
            self._transport.write(self._held)
            self._held = b""
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
