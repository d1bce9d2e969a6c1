"""Embedded runtime tests: real servers on free 127.0.0.1 ports, real SQLite, real files."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.embedded.browser import CALL_FAILED, CHROMIUM, MISSING, keep_screenshot_if_failed
from tests.embedded.helpers import write_config


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., EmbeddedServer]]:
    """Start an in-process server for a config written by `write_config(**options)`."""
    servers: list[EmbeddedServer] = []

    def start(data_dir: Path | None = None, seed: int = 0, **options) -> EmbeddedServer:
        config = write_config(tmp_path, **options)
        runtime = Runtime(config, data_dir or tmp_path / "data", rng=random.Random(seed))
        server = EmbeddedServer(runtime).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


class _ModelServer(BaseHTTPRequestHandler):
    """A model behind HTTP: echoes what it got as JSON; `/fail` answers 500, `/half-an-emoji`
    JSON holding half a surrogate pair (as JavaScript writes an emoji cut in two)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/fail":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"out of memory")
            return
        answer = json.dumps(
            {"got": body.decode(), "content_type": self.headers["Content-Type"]}
        ).encode()
        if self.path == "/half-an-emoji":
            answer = b'{"text": "\\ud83d"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def model_url() -> Iterator[str]:
    """Base URL of a model server on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelServer)
    # shutdown() waits for the loop's next poll: 0.5 s by default, on every test using it.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium per test session (per xdist worker): starting one takes ~1 s."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(MISSING)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Notes whether the test itself failed, for `open_page`'s teardown."""
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """`open_page(width, height)`: a new page of the shared browser, closed after the test.

    A failed test leaves its page's screenshot in test-artifacts/. Only a failed one: a
    full-page screenshot took 0.1-1 s (about 1 s of each /docs test, whose page is long
    once operations are expanded), and nobody looks at a passing test's.
    """
    pages: list[Any] = []

    def open_one(width: int, height: int) -> Any:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(15_000)
        pages.append(page)
        return page

    yield open_one
    for page in pages:
        keep_screenshot_if_failed(page, request)
        page.close()
