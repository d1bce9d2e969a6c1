"""The dashboard's lifecycle block in a real browser: pause, resume and conclude clicked on
the page reach the admin API, and the state, the actions offered and the audit log it then
renders are exactly /admin/show's."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from abtest.demo.simulation import ApiClient, simulate
from abtest.demo.worlds import Bernoulli, TruthWorld
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.embedded.helpers import ENDPOINT, write_config

pytestmark = pytest.mark.slow  # a browser

CONSTANT = {
    "Champion1": "tests.embedded.helpers:constant",
    "Challenger1": "tests.embedded.helpers:constant",
}


TOKEN = "dashboard-s3cret"


@contextmanager
def started(folder: Path, token: str | None = None) -> Iterator[EmbeddedServer]:
    """A running endpoint after a little traffic (its own: the test changes its state)."""
    config = write_config(folder, interval=3600, variants=CONSTANT)
    runtime = Runtime(config, folder / "data", rng=random.Random(5))
    world = TruthWorld({"Champion1": Bernoulli(0.3), "Challenger1": Bernoulli(0.5)}, data={})
    auth = {"Authorization": f"Bearer {token}"} if token else None
    with EmbeddedServer(runtime, token=token) as server:
        with ApiClient(server.url, headers=auth) as client:
            simulate(client, ENDPOINT, world, users=40, seed=1, progress=False)
        runtime.events.flush()
        yield server


@pytest.fixture
def server(tmp_path) -> Iterator[EmbeddedServer]:
    with started(tmp_path) as running:
        yield running


@pytest.fixture
def guarded(tmp_path) -> Iterator[EmbeddedServer]:
    with started(tmp_path, TOKEN) as running:
        yield running


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    return open_page(width=1400, height=1400)


def admin(
    server: EmbeddedServer, action: str, token: str | None = None, **body: Any
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"endpoint_name": ENDPOINT, **body}
    answer = httpx.post(f"{server.url}/admin/{action}", json=body, headers=headers)
    answer.raise_for_status()
    return answer.json()


def rendered(page: Any) -> dict[str, Any]:
    """What the page shows of the lifecycle, in /admin/show's terms."""
    return page.evaluate(
        """(name) => {
            const hook = document.querySelector(`section[data-endpoint='${name}'] .lifecycle`);
            const text = (row, field) => row.querySelector(`[data-field='${field}']`).textContent;
            const winner = hook.querySelector(".state [data-field='winner']");
            return {
                hidden: hook.hidden,
                state: hook.querySelector("[data-field='state']").dataset.value,
                version: Number(hook.dataset.version),
                winner: winner ? winner.textContent : null,
                buttons: [...hook.querySelectorAll("button[data-action]")]
                    .map((b) => b.dataset.action),
                audit: [...hook.querySelectorAll("tr[data-field='audit']")].map((row) => ({
                    at: Number(row.querySelector("[data-field='at']").dataset.value),
                    shown_at: text(row, "at"),
                    actor: text(row, "actor"),
                    action: text(row, "action"),
                    reason: text(row, "reason"),
                })),
                result: hook.querySelector("[data-field='result']").textContent,
            };
        }""",
        ENDPOINT,
    )


CLI_ONLY = ("add-variant", "weights")


def assert_shows(page: Any, server: EmbeddedServer) -> dict[str, Any]:
    """The page, once it caught up with the server, renders /admin/show's state, the actions
    it allows, and its audit log newest first."""
    shown = admin(server, "show")
    page.wait_for_function(
        "([name, version]) => Number(document.querySelector("
        "`section[data-endpoint='${name}'] .lifecycle`).dataset.version) === version",
        arg=[ENDPOINT, shown["version"]],
    )
    on_page = rendered(page)
    assert not on_page["hidden"]
    assert on_page["state"] == shown["state"]
    # Those taking more input than a button (a model, weights) are named, not buttons.
    assert on_page["buttons"] == [a for a in shown["allowed_actions"] if a not in CLI_ONLY]
    assert on_page["winner"] == (f" · winner {shown['winner']}" if shown["winner"] else None)
    newest_first = [
        {"at": e["at"], "actor": e["actor"], "action": e["action"], "reason": e["reason"]}
        # local time, year first: the same on every browser, whatever its language
        | {"shown_at": datetime.fromtimestamp(e["at"]).strftime("%Y-%m-%d %H:%M:%S")}
        for e in reversed(shown["audit_log"])
    ]
    for entry, logged in zip(newest_first, reversed(shown["audit_log"]), strict=True):
        for named in ("winner", "variant"):  # the page names the winner or variant acted on
            if named in logged["details"]:
                entry["action"] += f" ({logged['details'][named]})"
    assert on_page["audit"] == newest_first
    return on_page


def click(page: Any, action: str, reason: str) -> None:
    """Click `action` and wait for the server's answer on the page: /admin/show read before
    that could still be the state before the click (a test's race, seen under load)."""
    lifecycle = page.locator(f"section[data-endpoint='{ENDPOINT}'] .lifecycle")
    lifecycle.locator("input[name='reason']").fill(reason)
    lifecycle.locator(f"button[data-action='{action}']").click()
    page.wait_for_function(
        "([name, action]) => document.querySelector(`section[data-endpoint='${name}'] .result`)"
        ".textContent.startsWith(action + ':')",
        arg=[ENDPOINT, action],
    )


def test_pause_resume_conclude_through_the_page(page, server) -> None:
    listed: list[str] = []
    page.on("request", lambda r: listed.append(r.url) if r.url.endswith("/admin/list") else None)
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    # GIVEN a running endpoint, WHEN a browser opens /dashboard
    page.goto(f"{server.url}/dashboard")
    page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
    assert listed  # the endpoints come from /admin/list
    # THEN it shows the state and offers only the legal moves (no resume)
    assert assert_shows(page, server)["buttons"] == ["pause", "conclude", "retire-variant"]
    elsewhere = page.locator(f"section[data-endpoint='{ENDPOINT}'] [data-field='elsewhere']")
    assert "add-variant: abtest endpoints or the admin API" in elsewhere.text_content()

    # WHEN pause is clicked with a reason THEN the state and the audit entry are the server's
    click(page, "pause", "retraining")
    paused = assert_shows(page, server)
    assert paused["state"] == "paused"
    assert paused["buttons"] == ["resume", "conclude", "retire-variant"]
    assert paused["audit"][0] | {"at": 0, "shown_at": ""} == {
        "at": 0,
        "shown_at": "",
        "actor": "local",
        "action": "pause",
        "reason": "retraining",
    }
    assert paused["result"] == "pause: done, paused"

    click(page, "resume", "retrained")
    assert [e["action"] for e in assert_shows(page, server)["audit"]] == ["resume", "pause"]

    # A move made elsewhere meanwhile: the page's now stale button gets the 409, shown as it is.
    stale = page.locator(f"section[data-endpoint='{ENDPOINT}'] button[data-action='pause']")
    handle = stale.element_handle()
    admin(server, "pause", reason="from the CLI")
    handle.evaluate("(button) => button.click()")  # the old button, even if redrawn meanwhile
    page.wait_for_function(
        "(name) => document.querySelector(`section[data-endpoint='${name}'] .result`)"
        ".textContent.includes('409')",
        arg=ENDPOINT,
    )
    assert "is paused: cannot pause" in rendered(page)["result"]
    assert assert_shows(page, server)["state"] == "paused"

    # WHEN concluded with a chosen winner THEN the winner is shown and nothing is offered
    lifecycle = page.locator(f"section[data-endpoint='{ENDPOINT}'] .lifecycle")
    lifecycle.locator("select[data-field='winner']").select_option("Challenger1")
    click(page, "conclude", "clear winner")
    concluded = assert_shows(page, server)
    assert (concluded["state"], concluded["buttons"]) == ("concluded", [])
    assert concluded["winner"] == " · winner Challenger1"
    assert concluded["audit"][0]["action"] == "conclude (Challenger1)"
    assert admin(server, "show")["winner"] == "Challenger1"
    assert failures == []


def test_a_retired_variant_is_not_offered_as_the_winner(page, server) -> None:
    # The server refuses it (409 naming winner); the page offered every variant.
    admin(server, "retire-variant", variant="Challenger1")

    page.goto(f"{server.url}/dashboard")
    page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")

    lifecycle = page.locator(f"section[data-endpoint='{ENDPOINT}'] .lifecycle")
    options = lifecycle.locator("select[data-field='winner'] option").all_text_contents()
    assert [o for o in options if not o.startswith("the decision's")] == ["Champion1"]


def test_with_a_token_the_page_acts_as_the_token(page, guarded) -> None:
    # GIVEN a server with a token, opened as /dashboard#token=TOKEN
    page.goto(f"{guarded.url}/dashboard#token={TOKEN}")
    page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
    # WHEN pause is clicked THEN the admin route took the token: the audit log names it
    click(page, "pause", "night")
    page.wait_for_function(
        "(name) => document.querySelector(`section[data-endpoint='${name}'] .lifecycle`)"
        ".dataset.version === '1'",
        arg=ENDPOINT,
    )
    [entry] = admin(guarded, "show", TOKEN)["audit_log"]
    assert entry["actor"].startswith("token:")
    [shown] = rendered(page)["audit"]
    assert shown | {"shown_at": ""} == {
        "at": entry["at"],
        "shown_at": "",
        "actor": entry["actor"],
        "action": "pause",
        "reason": "night",
    }


def test_a_demoted_variant_is_reinstated_through_the_page(page, tmp_path) -> None:
    # GIVEN a guardrail on the error rate and a challenger whose model fails every fifth call
    config = write_config(
        tmp_path,
        interval=3600,
        strategy="WeightedSampling",
        variants={
            "Champion1": "tests.embedded.helpers:constant",
            "Challenger1": "tests.embedded.helpers:flaky",
        },
        extra_endpoint="max_error_rate = 0.05",
    )
    runtime = Runtime(config, tmp_path / "data", rng=random.Random(5))
    with EmbeddedServer(runtime) as server, httpx.Client(timeout=30) as http:
        for n in range(200):
            http.post(
                f"{server.url}/invocation",
                json={"endpoint_name": ENDPOINT, "user_id": f"u{n}", "data": "x"},
            )
        runtime.events.flush()  # one aggregation: the evidence is there
        assert admin(server, "show")["variant_metrics"][1]["demoted"]

        # WHEN a browser opens the dashboard THEN it offers reinstate, for the demoted one only
        page.goto(f"{server.url}/dashboard")
        page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
        assert "reinstate" in assert_shows(page, server)["buttons"]
        # AND the variants table shows its error rate as demoted, saying why on hover
        challenger = admin(server, "show")["variant_metrics"][1]
        errors = page.locator("tr[data-variant='Challenger1'] td[data-field='error_rate']")
        assert (errors.get_attribute("class"), errors.get_attribute("title")) == (
            "demoted",
            challenger["demoted"],
        )
        assert errors.inner_text().endswith(
            f"({challenger['model_errors']} of {challenger['model_calls']})"
        )
        lifecycle = page.locator(f"section[data-endpoint='{ENDPOINT}'] .lifecycle")
        choices = lifecycle.locator("button[data-action='reinstate'] ~ select option")
        assert choices.all_text_contents() == ["Challenger1"]

        # WHEN reinstate is clicked THEN the server reinstated it, and the page says so
        click(page, "reinstate", "model fixed")
        shown = assert_shows(page, server)
        assert "reinstate" not in shown["buttons"]
        assert shown["audit"][0]["action"] == "reinstate (Challenger1)"
        assert shown["audit"][0]["reason"] == "model fixed"
        assert admin(server, "show")["variant_metrics"][1]["demoted"] is None
