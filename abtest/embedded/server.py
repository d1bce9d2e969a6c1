"""The embedded HTTP server: a plain ASGI app, run by uvicorn, serving the API's routes.

Each request goes straight to the API's one request path (`abtest.http.api`), the one
the Lambda adapter calls too, so parsing, validation, errors and the OpenAPI document
are the Lambda's own, without an API Gateway event or a framework in between. The
service is blocking (SQLite, model calls), so requests run on worker threads: the event
loop stays free for other connections and /health whatever a model or the database does.
One exception: when every model is declared `inline`, an invocation is answered on the
loop; a write that would wait there waits for the store's gate without holding the loop,
or moves to a thread if another process holds the lock (`abtest.adapters.nonblocking`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import hmac
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import uvicorn

from abtest.adapters import nonblocking
from abtest.embedded import connections, dashboard, docs
from abtest.embedded.connections import WHOLE_ANSWER
from abtest.embedded.wiring import Runtime
from abtest.errors import (
    AbtestError,
    BadRequestError,
    ConfigError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnauthorizedError,
)
from abtest.http import api
from abtest.http.openapi import openapi_json
from abtest.http.routes import route_named
from abtest.lifecycle import LOCAL_ACTOR

Scope = dict[str, Any]

# A request's body must arrive within this (its head: connections.HEADER_TIMEOUT_SECONDS).
BODY_TIMEOUT_SECONDS = 30.0
# Requests served at once (as many as anyio's default, which served them before); more wait.
REQUEST_THREADS = 40
_JSON_CONTENT_TYPE = (b"content-type", api.JSON.encode())
# What AbtestApp._body answers for a body not received in time.
_LATE: Final = object()
# What _read_body answers when the connection ends before the body does: the client went
# away, or sent a chunk uvicorn refused (and answered). Nobody waits for an answer, and a
# request received in part is never served.
_CUT: Final = object()
# The route answered on the event loop when it can be: its one store write (a new user's
# assignment) comes before anything it changes, so moving it to a thread there is safe.
# /conversion logs its event before its write, so it always runs on a thread.
INVOCATION_PATH = route_named("invocation").path
# How long an invocation on the loop waits for the store's gate (held by another thread)
# before a request thread takes over its wait: a transaction holds it for milliseconds.
GATE_WAIT_SECONDS = 1.0
# How long a thread holds the GIL while another waits for it (Python's default: 5 ms).
# Aggregation runs on a thread of the serving process every buffer_interval_seconds (about
# 5 us per event); at 5 ms the event loop's requests waited out each of its slices.
SWITCH_INTERVAL_SECONDS = 0.001


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token: the data routes move the counters."""
    if token is not None and not token.strip():
        raise ConfigError("the token is empty; give a secret string")
    if token is None and not _is_loopback(host):
        raise ConfigError(
            f"--host {host} is reachable from other machines: give --token (or set "
            "ABTEST_TOKEN) so that only callers holding it can use the API"
        )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class AbtestApp:
    """ASGI app over a started Runtime; closes the runtime on lifespan shutdown.

    With a `token`, the routes need `Authorization: Bearer <token>` (and the OpenAPI document
    says so); /health and the documents stay open (probes, and the docs a client needs to
    find out how to call it).
    """

    def __init__(self, runtime: Runtime, token: str | None = None) -> None:
        self.runtime = runtime
        self._token = f"Bearer {token}".encode() if token is not None else None
        # Who the audit log names: a token by a short digest (which token, never the token).
        self._actor = LOCAL_ACTOR if token is None else f"token:{_digest(token)}"
        self.api = api.Api(runtime.use_cases)
        # A plain pool: handing a request to it costs about half of anyio.to_thread's way.
        self._requests = ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="abtest-request")
        self._openapi: bytes | None = None
        # Requests reading their body, oldest first, with their deadlines (loop time).
        self._reading: dict[asyncio.Task, float] = {}
        self._late: set[asyncio.Task] = set()
        self._sweep: asyncio.TimerHandle | None = None
        # Invocations are answered on the loop first when no model call can wait (all are
        # inline): the store read, a new user's write, the model call and the event append
        # take microseconds, less than a hand-off to a thread; a write that would wait for
        # the lock moves the request to one.
        self._models = runtime.models  # all inline: invocations first try on the loop
        # The serving loop, from lifespan startup to shutdown: asyncio's way to find the
        # running loop makes a getpid() system call (a fork check) each time, twice a request.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method in ("GET", "HEAD") and path in ("/openapi.json", "/health", "/"):
            await self._static(path, send)
            return
        if method in ("GET", "HEAD") and (page := self._page(path)) is not None:
            await _send(send, 200, {"content-type": page[0]}, page[1])
            return
        if self._token is not None and not self._authorized(scope):
            error = UnauthorizedError("Authorization: send the server's token as 'Bearer <token>'")
            await _send_error(send, error, {"www-authenticate": "Bearer"})
            return
        body = await self._body(scope, receive)
        if body is _CUT:
            return
        if body is _LATE:
            error = RequestTimeoutError(f"body: not received within {BODY_TIMEOUT_SECONDS:g} s")
            await _send_error(send, error, {"connection": "close"})
            return
        if not isinstance(body, bytes):
            await _send_error(send, PayloadTooLargeError(f"body over {api.MAX_BODY_BYTES} bytes"))
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            await _send_error(send, BadRequestError.field("body", "not UTF-8; send a JSON object"))
            return
        content_type = _header(scope, b"content-type")
        answer = None
        if self._models.all_inline and path.rstrip("/") == INVOCATION_PATH:
            try:
                with nonblocking.on_the_loop():
                    answer = self.api.answer(method, path, content_type, text, self._actor)
            except nonblocking.WouldBlock as blocked:  # a new user's assignment
                answer = await self._answer_when_free(blocked, method, path, content_type, text)
        if answer is None:
            loop = self._loop or asyncio.get_running_loop()
            answer = await loop.run_in_executor(
                self._requests, self.api.answer, method, path, content_type, text, self._actor
            )
        if answer.headers:
            headers = {"content-type": api.JSON, **dict(answer.headers)}
            await _send(send, answer.status, headers, answer.body)
            return
        # Most answers: 200, JSON, no other header: written whole by the connection if it
        # can (`connections.WholeAnswer`), else the head's list made without a dict.
        whole = scope.get("extensions", {}).get(WHOLE_ANSWER) if answer.status == 200 else None
        if whole is not None and whole(answer.body):
            return
        length = (b"content-length", str(len(answer.body)).encode())
        headers = [_JSON_CONTENT_TYPE, length]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer_when_free(
        self,
        blocked: nonblocking.WouldBlock,
        method: str,
        path: str,
        content_type: str | None,
        text: str,
    ) -> api.Answer | None:
        """The answer worked out on the loop once what blocked it is free, or None if only
        a thread can wait for it.

        A new user's write that finds the store's gate taken by one of this process's
        threads (aggregation, a conversion) waits for its release here, other requests
        going on, and is answered again on the loop: handed to a thread instead, at 64
        connections of new users half of them went to threads and queued there."""
        loop = self._loop or asyncio.get_running_loop()
        while blocked.when_free is not None:  # None: another process holds SQLite's lock
            free = loop.create_future()
            blocked.when_free(functools.partial(_wake, loop, free))
            try:
                async with asyncio.timeout(GATE_WAIT_SECONDS):
                    await free
            except TimeoutError:
                return None  # held that long: a thread waits, up to the busy timeout
            try:
                with nonblocking.on_the_loop():
                    return self.api.answer(method, path, content_type, text, self._actor)
            except nonblocking.WouldBlock as again:
                blocked = again
        return None

    def _page(self, path: str) -> tuple[str, bytes] | None:
        """The docs or the dashboard (open, like the documents: the data they show comes
        from the routes, which ask for the token)."""
        return docs.answer(path) or dashboard.answer(path, self.runtime.endpoint_names)

    async def _body(self, scope: Scope, receive: Any) -> bytes | object | None:
        """The body as `_read_body` gives it, or _LATE past BODY_TIMEOUT_SECONDS.

        The deadline is a dict entry that a sweep once a second checks (then cancels the
        late task), not a timer per request, which cost more than a whole invocation."""
        loop = self._loop or asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        self._reading[task] = loop.time() + BODY_TIMEOUT_SECONDS  # newest last
        if self._sweep is None:
            self._sweep = loop.call_later(1.0, self._cut_late_bodies, loop)
        try:
            return await _read_body(scope, receive)
        except asyncio.CancelledError:
            if task not in self._late:
                raise  # cancelled by the server (shutdown, a lost connection)
            self._late.discard(task)
            task.uncancel()
            return _LATE
        finally:
            self._reading.pop(task, None)

    def _cut_late_bodies(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self._reading.items()):
            if deadline > now:
                break  # the rest came later
            del self._reading[task]
            self._late.add(task)
            task.cancel()
        self._sweep = loop.call_later(1.0, self._cut_late_bodies, loop) if self._reading else None

    def _authorized(self, scope: Scope) -> bool:
        assert self._token is not None
        sent = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        return hmac.compare_digest(sent, self._token)  # constant time: no guessing by timing

    async def _static(self, path: str, send: Any) -> None:
        if path == "/openapi.json":
            if self._openapi is None:
                self._openapi = openapi_json(token=self._token is not None).encode()
            await _send(send, 200, {"content-type": "application/json"}, self._openapi)
        else:
            body = {
                "status": "ok",
                "endpoint_names": list(self.runtime.endpoint_names),
                "routes": [f"POST {route_named(name).path}" for name in self.runtime.use_cases],
                "openapi": "/openapi.json",
                "docs": docs.PAGE,
                "dashboard": dashboard.PAGE,
                # Fallbacks, model errors and duplicate conversions since the server started.
                "counts": self.runtime.telemetry.totals(),
                # Sealed, not yet counted: more than a moment means aggregation fails (the
                # log says why) and /stats lags what was served.
                "event_files_waiting": len(self.runtime.events.waiting_keys()),
            }
            await _send(send, 200, {"content-type": "application/json"}, _json(body))

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Requests still on a thread finish first (uvicorn has let their connections
                # finish, so this is at most a model call's bound): none may use the store
                # while it closes. Then seal and aggregate the buffer before the process goes.
                await anyio.to_thread.run_sync(self._requests.shutdown)
                await anyio.to_thread.run_sync(self.runtime.close)
                self._loop = None
                await send({"type": "lifespan.shutdown.complete"})
                return


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
    """From the thread giving the store's gate back: the waiting request may go on."""
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(_settle, future)


def _settle(future: asyncio.Future) -> None:
    if not future.done():  # not cancelled meanwhile (a lost connection, the wait's bound)
        future.set_result(None)


def _header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the last, if sent twice), or None."""
    value = None
    for key, raw in scope.get("headers", []):
        if key == name:
            value = raw.decode("latin-1")
    return value


async def _read_body(scope: Scope, receive: Any) -> bytes | object | None:
    """The whole body, None as soon as it is over the Lambda limit (never buffered whole),
    or _CUT if the connection ended before the body did."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit() and int(value) > api.MAX_BODY_BYTES:
            return None
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body = message.get("body", b"")  # all of it in one message, the usual case
        return body if len(body) <= api.MAX_BODY_BYTES else None
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            return _CUT
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > api.MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    return b"".join(chunks)


async def _send_error(send: Any, error: AbtestError, headers: dict[str, str] | None = None) -> None:
    headers = {"content-type": "application/json", **(headers or {})}
    await _send(send, error.status, headers, _json(error.body()))


async def _send(send: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw = [(k, v) for k, v in raw if k != b"content-length"]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # Nagle + delayed ACKs add 40 ms to every keep-alive response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def settle_serving_process() -> None:
    """For a process that only serves (`abtest serve`, each of its workers), once started.

    gc.freeze(): what start made (imports, the runtime: about 40,000 objects) leaves the
    collector's view; a full collection over them paused every request in flight for
    about 30 ms, under 1 ms without them. And a shorter GIL switch interval (above), so
    the loop waits less behind the aggregation thread. Not for `EmbeddedServer`: the
    process (a notebook, tests) is someone else's."""
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


class _Server(uvicorn.Server):
    """uvicorn's server, calling `on_started` once it accepts on its sockets.

    `abtest serve` prints its URL from there: scripts and tests send as soon as they read
    it, and printed by the owner before its `--workers` started, the line came 0.3-0.45 s
    before their first answer on a quiet machine, 0.5-1.25 s at load average 8."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    def stop_soon(self) -> None:
        """Ask it to stop (from any thread): uvicorn notices at its next tick."""
        self.should_exit = True


class _PromptServer(_Server):
    """uvicorn's server, stopping at once when asked: uvicorn notices `should_exit` at its
    next 0.1 s tick, then gives open connections a fixed 0.1 s before waiting for them;
    0.17-0.18 s per stop in all, most of the fast test suite's teardown time (an
    `EmbeddedServer` per test). `stop` wakes the tick, and with no connection or request
    open there is nothing to give time to. Anything open takes uvicorn's own way."""

    _wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    async def main_loop(self) -> None:
        wake = asyncio.Event()
        self._wake = (asyncio.get_running_loop(), wake)
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000  # uvicorn's: a day of ticks
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    def stop_soon(self) -> None:
        """`should_exit`, noticed now rather than at the next tick (from any thread)."""
        super().stop_soon()
        if self._wake is not None:
            loop, wake = self._wake
            with contextlib.suppress(RuntimeError):  # the loop has closed: it has exited
                loop.call_soon_threadsafe(wake.set)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGINT or SIGTERM (`abtest serve`): uvicorn's handling, noticed at once."""
        super().handle_exit(sig, frame)
        self.stop_soon()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        # No await before the listeners close: no connection can open in between.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


# uvicorn's internals the prompt stop overrides; another version runs uvicorn's own.
_PROMPT_STOP = all(
    callable(getattr(uvicorn.Server, name, None))
    for name in ("main_loop", "on_tick", "shutdown", "handle_exit")
)


def uvicorn_server(app: AbtestApp, on_started: Callable[[], None] | None = None) -> _Server:
    """uvicorn serving `app` with the connection guard's deadlines and cap; `on_started` is
    called (on the serving loop) once it accepts connections."""
    config = uvicorn.Config(
        app,
        http=connections.guarded_protocol(
            connections.connection_cap(), connections.HEADER_TIMEOUT_SECONDS
        ),
        lifespan="on",
        # No WebSocket route: an upgrade request is served as plain HTTP, even where a
        # WebSocket library is installed (uvicorn would hand it to the app, which has none).
        ws="none",
        log_level="warning",
        access_log=False,
        # Nothing here reads the client's address or scheme: no X-Forwarded-* rewriting
        # (a middleware layer on every request).
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        backlog=connections.ACCEPT_BATCH,
        timeout_keep_alive=connections.KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=connections.MAX_HEADER_BYTES,
    )
    return (_PromptServer if _PROMPT_STOP else _Server)(config, on_started)


def serve(
    make_runtime: Callable[[], Runtime],
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    token: str | None = None,
    out: Any = print,
    workers: int = 1,
) -> None:
    """Run until SIGINT/SIGTERM (uvicorn's handlers), then seal and aggregate the buffer.

    The runtime is made once the port is bound, so that a port in use leaves no data dir
    behind. The line naming the URL is printed once requests are answered: by this
    process, or with `workers` > 1 by each of that many (`abtest.embedded.workers`)."""
    check_exposure(host, token)
    sock = bind(host, port)
    try:
        runtime = make_runtime()
    except BaseException:
        sock.close()
        raise
    try:
        runtime.start()
        settle_serving_process()
        url = url_of(sock)
        names = ", ".join(repr(name) for name in runtime.endpoint_names)
        announce = functools.partial(
            out,
            f"abtest: serving endpoint{'s' if len(runtime.endpoint_names) > 1 else ''} {names} "
            f"on {url} (dashboard {url}/dashboard, docs {url}/docs, data "
            f"{Path(runtime.data_dir).resolve()})",
        )
        if workers > 1:
            from abtest.embedded.workers import serve_workers

            serve_workers(runtime, sock, workers, token, out, on_ready=announce)
        else:
            uvicorn_server(AbtestApp(runtime, token), on_started=announce).run(sockets=[sock])
    finally:
        runtime.close()  # a no-op after the lifespan shutdown closed it
        sock.close()


class EmbeddedServer:
    """The server on a background thread of this process: for the demo, notebook and tests.

    with EmbeddedServer(Runtime(config, data_dir)) as server:
        httpx.post(f"{server.url}/invocation", json=...)
    """

    def __init__(
        self, runtime: Runtime, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> None:
        check_exposure(host, token)
        self.runtime = runtime
        self.host, self.port = host, port
        self.token = token
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        self._sock = bind(self.host, self.port)
        self.url = url_of(self._sock)
        try:
            self.runtime.start()
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        self._server = uvicorn_server(AbtestApp(self.runtime, self.token))
        sockets = [self._sock]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": sockets}, name="abtest-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the embedded server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, then seal and aggregate what is buffered."""
        if self._server is not None and self._thread is not None:
            self._server.stop_soon()
            self._thread.join()
        self._server = self._thread = None
        self.runtime.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
