"""`abtest dashboard --url URL`: the dashboard, served on this machine, of a deployed API.

The browser talks to a local server on 127.0.0.1, which serves the page's files itself and
forwards the routes the page calls, `POST /stats`, `POST /history` and the admin routes
(list, show, and the lifecycle changes), to the API with the auth the API needs (a SigV4
signature, an API key, a bearer token): the credentials stay in this process, never in the
browser. Nothing else is forwarded, so the proxy cannot be used to invoke a model or record
a conversion, and it listens on loopback only. Because it lends its credentials to whatever
reaches it, it forwards only JSON requests from its own page: another site open in the same
browser can send a form or `text/plain` POST without asking, but never one with a JSON
content type, and its `Origin` is not this one.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from abtest.embedded import dashboard
from abtest.http.routes import ADMIN_ROUTES

FORWARDED = ("/stats", "/history", *(route.path for route in ADMIN_ROUTES))
MAX_BODY_BYTES = 64 * 1024  # an endpoint name and a limit: anything bigger is not the page's
UPSTREAM_TIMEOUT_SECONDS = 15.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DashboardProxy:
    """The dashboard of `url`'s `endpoints` on a free (or given) loopback port."""

    def __init__(
        self,
        url: str,
        endpoints: Sequence[str],
        *,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.upstream = url.rstrip("/")
        self.endpoints = list(endpoints)
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        except OSError as error:  # as `abtest serve` says it
            raise OSError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
        self._client = httpx.Client(auth=auth, headers=headers, timeout=UPSTREAM_TIMEOUT_SECONDS)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def own_origin(self, origin: str) -> bool:
        """Whether a browser's `Origin` is this page's: a loopback name and this port (the
        page may be opened as localhost too; a rebound DNS name is not loopback)."""
        try:
            parsed = urllib.parse.urlsplit(origin)
            port = parsed.port
        except ValueError:
            return False
        own_port = self._server.server_address[1]
        return parsed.scheme == "http" and parsed.hostname in LOOPBACK and port == own_port

    def start(self) -> DashboardProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="abtest-dashboard", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._client.close()

    def __enter__(self) -> DashboardProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        """The API's answer to the page's request, or a 502 saying why there is none."""
        try:
            answer = self._client.post(
                self.upstream + path,
                content=body,  # as sent: a SigV4 signature covers these exact bytes
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as error:
            return _error(502, "upstream_unreachable", f"{self.upstream}{path}: {error}")
        return answer.status_code, answer.content


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": code, "message": message, "details": []}).encode()


def _handler(proxy: DashboardProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = dashboard.answer(self.path.split("?")[0], proxy.endpoints, docs=False)
            if page is None:
                status, body = _error(404, "not_found", f"no page {self.path}; open /dashboard")
                self._send(status, "application/json", body)
            else:
                self._send(200, *page)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path not in FORWARDED:
                status, body = _error(
                    404, "not_found", f"only {', '.join(FORWARDED)} are forwarded, for the page"
                )
            elif not self._from_the_page():
                status, body = _error(
                    403, "forbidden", "only the dashboard's own JSON requests are forwarded"
                )
            elif length > MAX_BODY_BYTES:
                status, body = _error(413, "payload_too_large", f"body over {MAX_BODY_BYTES}")
            else:
                status, body = proxy.forward(self.path, self.rfile.read(length))
            self._send(status, "application/json", body)

        def _from_the_page(self) -> bool:
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            origin = self.headers.get("Origin")
            return kind == "application/json" and (origin is None or proxy.own_origin(origin))

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # the page polls: no line per request
            pass

    return Handler
