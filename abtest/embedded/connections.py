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
one send() per answer instead of two, the same bytes on the wire. And the commonest
answer (200, JSON, a kept-alive HTTP/1.1 connection) can be written whole without h11's
three events (`WHOLE_ANSWER`): under wrk, h11's Response, Data and EndOfMessage for each
answer cost about 40 us of the serving thread's CPU, a quarter of a returning user's.

A request h11 cannot read (a bad Content-Length or chunk, no Host) is answered with the
API's JSON 400 naming the part at fault, where uvicorn answers text; and none of the
warnings uvicorn logs for what a client sends is logged, as for the cap above.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
from typing import Any

import h11
from h11._state import SERVER
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol, RequestResponseCycle

from abtest.errors import BadRequestError

HEADER_TIMEOUT_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024
MAX_CONNECTIONS = 4096
# Connections accepted per wake-up of the event loop, before any of them can be turned
# away: up to two rounds of them may be open beyond the cap for a moment.
ACCEPT_BATCH = 128
# Descriptors kept for those rounds and everything else: SQLite, event files, model clients.
RESERVED_DESCRIPTORS = 2 * ACCEPT_BATCH + 64
# The ASGI scope extension under which a guarded connection offers `answer(body) -> bool`:
# a 200 JSON answer written whole, True, or False when the app must send it as usual.
WHOLE_ANSWER = "abtest.whole_answer"
_CLOSE = (b"connection", b"close")
_OK_LINE = b"HTTP/1.1 200 " + STATUS_PHRASES[200] + b"\r\n"
# The warnings uvicorn's protocol logs for what any client can send (a malformed request,
# an upgrade to a protocol not served): a flood of such requests would fill the log.
_CLIENT_CAUSED = (
    "Invalid HTTP request received.",
    "Unsupported upgrade request.",
    "No supported WebSocket library detected.",
)


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
    offer_whole = whole_answers_possible()

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection, deadline in list(waiting.items()):
            if deadline > now:
                break  # the rest came later
            connection.evict()
        sweeping[:] = [loop.call_later(1.0, sweep, loop)] if waiting else []

    class Guarded(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.logger = _QUIET  # type: ignore[assignment]

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to a request h11 cannot parse (called where it catches h11's
            error): the API's JSON error naming what is wrong, not a text/plain 400."""
            _refuse(self, sys.exc_info()[1])

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
                if offer_whole:
                    self.cycle.scope["extensions"] = {WHOLE_ANSWER: WholeAnswer(self.cycle)}

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


class _QuietLogger:
    """uvicorn's protocol logger, without the warnings a client's request can cause."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if not msg.startswith(_CLIENT_CAUSED):
            self._logger.warning(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


_QUIET = _QuietLogger(logging.getLogger("uvicorn.error"))


def _refuse(protocol: H11Protocol, error: BaseException | None) -> None:
    """Answer a request h11 refused with a JSON 400 naming the part at fault, and close."""
    body = json.dumps(_refusal(error).body()).encode()
    conn, transport = protocol.conn, protocol.transport
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # else an answer has begun: close
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            _CLOSE,
        ]
        response = h11.Response(status_code=400, headers=headers, reason=STATUS_PHRASES[400])
        events = (response, h11.Data(data=body), h11.EndOfMessage())
        transport.write(b"".join(conn.send(event) or b"" for event in events))
    transport.close()


def _refusal(error: BaseException | None) -> BadRequestError:
    """h11's error as a 400 naming the part of the request it is about: a header, the body
    (a chunk), or the request's head as a whole."""
    if not isinstance(error, h11.RemoteProtocolError):
        return BadRequestError.field("request", "not HTTP/1.1")
    if error.error_status_hint == 431:  # what is buffered of the head is over the bound
        return BadRequestError.field("request", f"head over {MAX_HEADER_BYTES // 1024} KiB")
    message = str(error).partition(": bytearray(")[0]  # not the line it quotes, at length
    for header in ("Content-Length", "Transfer-Encoding", "Host"):
        if header.lower() in message.lower():
            return BadRequestError.field(header, message)
    return BadRequestError.field("body" if "chunk" in message else "request", message)


def whole_answers_possible() -> bool:
    """Whether the installed h11 and uvicorn have what `WholeAnswer` uses beyond their
    public API; if a release renames any of it, answers go as two messages again rather
    than failing."""
    conn = h11.Connection(h11.SERVER)
    cycle_fields = RequestResponseCycle.__init__.__code__.co_names
    return (
        all(hasattr(conn, name) for name in ("_cstate", "_request_method"))
        and callable(getattr(conn, "_respond_to_state_changes", None))
        and all(hasattr(conn._cstate, name) for name in ("keep_alive", "pending_switch_proposals"))
        and all(name in cycle_fields for name in _CYCLE_FIELDS)
    )


# What WholeAnswer reads and sets on uvicorn's request cycle, as its `send` does.
_CYCLE_FIELDS = (
    "conn", "scope", "transport", "flow", "access_log", "default_headers", "message_event",
    "on_response", "keep_alive", "disconnected", "response_started", "response_complete",
    "waiting_for_100_continue",
)  # fmt: skip


class WholeAnswer:
    """Writes one request's 200 JSON answer in a single write, with h11's bookkeeping.

    The bytes are those h11 writes for uvicorn's `http.response.start` (status 200, the
    server's default headers, `content-type: application/json` and the content length)
    and `http.response.body`; the connection's state afterwards is the one h11 reaches
    by sending them (`tests/embedded/test_whole_answer.py` compares both). Only the plain
    case is taken: anything h11 or uvicorn would adjust (HTTP/1.0, `Connection: close`,
    HEAD, a protocol switch, paused writes, an access log) answers False, and the app
    sends its messages as before.
    """

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    def __call__(self, body: bytes) -> bool:
        cycle = self._cycle
        conn = cycle.conn
        state = conn._cstate
        if (
            cycle.response_started
            or cycle.disconnected
            or cycle.access_log
            or not cycle.keep_alive
            or cycle.flow.write_paused
            or conn.our_state is not h11.SEND_RESPONSE
            or conn.their_state is not h11.DONE
            or conn.their_http_version != b"1.1"
            or conn._request_method == b"HEAD"
            or not state.keep_alive
            or state.pending_switch_proposals
            or _CLOSE in cycle.scope["headers"]
        ):
            return False
        head = [_OK_LINE]
        head.extend(b"%s: %s\r\n" % pair for pair in cycle.default_headers)
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
        head.append(body)
        # What h11 does on sending Response, then EndOfMessage (Data changes no state).
        before = dict(state.states)
        state.process_event(SERVER, h11.Response, None)
        state.process_event(SERVER, h11.EndOfMessage, None)
        conn.client_is_waiting_for_100_continue = False
        conn._respond_to_state_changes(before, None)
        # What uvicorn's cycle does on the two messages.
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False
        cycle.message_event.set()
        transport = cycle.transport
        if isinstance(transport, Corked):
            transport = transport._transport
        transport.write(b"".join(head))
        cycle.on_response()
        return True


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
