"""/docs in a real browser: the page renders the OpenAPI document, and "Try it out" works.

Checking the HTML's strings is not enough: a Swagger UI that cannot read the document's
OpenAPI version still serves its page, then shows an error instead of the routes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from abtest.embedded.config import load_config
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from abtest.http.routes import ALL_ROUTES

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "abtest" / "demo" / "reviews.toml"
TOKEN = "docs-s3cret"

pytestmark = pytest.mark.slow  # a browser, and Swagger UI's 1.7 MB of JavaScript


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The demo endpoint, as `abtest serve --config abtest/demo/reviews.toml` serves it."""
    data_dir = tmp_path_factory.mktemp("docs-data")
    with EmbeddedServer(Runtime(load_config(DEMO_CONFIG), data_dir)) as server:
        yield server


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The demo endpoint, as `abtest serve --config abtest/demo/reviews.toml --token` serves it."""
    data_dir = tmp_path_factory.mktemp("docs-token-data")
    runtime = Runtime(load_config(DEMO_CONFIG), data_dir)
    with EmbeddedServer(runtime, token=TOKEN) as server:
        yield server


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    return open_page(width=1280, height=1600)


def _open_docs(page: Any, server: EmbeddedServer) -> None:
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    page.goto(f"{server.url}/docs")
    try:
        page.locator(".opblock").first.wait_for(timeout=10_000)
    except PlaywrightTimeoutError:  # e.g. a document version this Swagger UI cannot read
        pytest.fail(f"/docs shows no operation, but: {page.locator('body').inner_text()[:400]}")
    errors = page.locator(".errors-wrapper")
    assert errors.count() == 0, errors.first.inner_text()
    assert outside == []  # every file the page loads is served locally


def test_docs_list_every_route_with_the_documents_version(page, demo_server) -> None:
    # GIVEN the demo endpoint served, WHEN a browser opens /docs
    _open_docs(page, demo_server)
    # THEN Swagger UI rendered the document (no "Unable to render this definition")
    # and lists each route of the route table, with its summary
    listed = page.locator(".opblock-summary-path").all_inner_texts()
    assert sorted(text.strip() for text in listed) == sorted(r.path for r in ALL_ROUTES)
    summaries = page.locator(".opblock-summary-description").all_inner_texts()
    assert sorted(summaries) == sorted(r.summary for r in ALL_ROUTES)
    assert "OAS 3.1" in page.locator(".info").inner_text()
    # AND a server without a token asks for none: no "Authorize", no lock on a route
    assert page.locator(".auth-wrapper .authorize").count() == 0
    assert page.locator(".opblock .authorization__btn").count() == 0


def _try_it_out(page: Any, path: str) -> tuple[str, dict[str, Any]]:
    """Expand the operation, click "Try it out" then "Execute" with the prefilled example."""
    operation = page.locator(".opblock-post", has_text=path)
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    return _execute(operation)


def _execute(operation: Any) -> tuple[str, dict[str, Any]]:
    """Click "Execute" (after "Clear", if an answer is shown); the status and body shown."""
    live = operation.locator(".live-responses-table .response")
    if live.count():
        operation.locator(".btn-clear").click()
        live.first.wait_for(state="detached")
    operation.locator(".execute").click()
    live.first.wait_for()
    status = live.locator(".response-col_status").first.inner_text().strip()
    body = operation.locator(".live-responses-table .microlight").first.inner_text()
    return status, json.loads(body)


def _authorize(page: Any, token: str) -> None:
    """Click "Authorize", enter the token as the bearer scheme's value, apply, close."""
    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".dialog-ux")
    dialog.get_by_label("auth-bearer-value").fill(token)
    dialog.get_by_role("button", name="Apply credentials").click()
    dialog.get_by_role("heading", name="Authorized").wait_for()
    dialog.locator(".btn-done").click()
    dialog.wait_for(state="detached")


def test_try_it_out_answers_200_with_each_example_as_it_is(page, demo_server) -> None:
    # GIVEN /docs, WHEN the user runs "Try it out" on /invocation with its example unchanged
    _open_docs(page, demo_server)
    status, answer = _try_it_out(page, "/invocation")
    # THEN the live answer is a 200 from the demo endpoint, with the model's predictions
    assert status == "200", answer
    assert answer["endpoint_name"] == "reviews-helpfulness"
    assert answer["endpoint_variant"] in {"Champion1", "Challenger1"}
    assert answer["predictions"][0]["label"][0].startswith("__label__")
    # AND the conversion and stats examples, run next, answer 200 too (same example user)
    status, conversion = _try_it_out(page, "/conversion")
    assert (status, conversion["user_id"]) == ("200", answer["user_id"])
    status, stats = _try_it_out(page, "/stats")
    assert (status, stats["strategy"]) == ("200", load_config(DEMO_CONFIG).endpoint.strategy)


def test_try_it_out_on_a_server_with_a_token_answers_200_once_authorized(
    page, guarded_server
) -> None:
    # GIVEN /docs of a server with a token: every route shows its lock
    _open_docs(page, guarded_server)
    locks = page.locator(".opblock .authorization__btn")
    assert locks.count() == len(ALL_ROUTES)
    # WHEN the user runs "Try it out" on /invocation without authorizing
    status, answer = _try_it_out(page, "/invocation")
    # THEN the live answer is the server's 401
    assert (status, answer["error"]) == ("401", "unauthorized"), answer
    # WHEN the user enters the token under "Authorize" and executes the example again
    _authorize(page, TOKEN)
    status, answer = _execute(page.locator(".opblock-post", has_text="/invocation"))
    # THEN the live answer is a 200 from the demo endpoint
    assert status == "200", answer
    assert answer["endpoint_name"] == "reviews-helpfulness"
    assert answer["endpoint_variant"] in {"Champion1", "Challenger1"}
    # AND the next route tried is sent the token too
    status, stats = _try_it_out(page, "/stats")
    assert (status, stats["endpoint_name"]) == ("200", "reviews-helpfulness"), stats
