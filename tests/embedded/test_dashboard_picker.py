"""/dashboard of a server of several endpoints, in a real browser: a button per endpoint, the
one picked shown with its own figures and lifecycle, kept in the fragment across a reload."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from abtest.demo.simulation import ApiClient, simulate
from abtest.demo.worlds import Bernoulli, TruthWorld
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.embedded.test_several_endpoints import ALPHA, BETA

pytestmark = pytest.mark.slow  # a browser, and plotly.js's 4.8 MB

CONFIG = "[event_log]\nbuffer_interval_seconds = 3600\n" + ALPHA + BETA


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """alpha and beta, with traffic on beta only (so the two tables cannot be confused)."""
    (tmp_path / "experiments.toml").write_text(CONFIG)
    runtime = Runtime(tmp_path / "experiments.toml", tmp_path / "data", rng=random.Random(5))
    world = TruthWorld({name: Bernoulli(0.3) for name in ("B1", "B2", "B3")}, data={})
    with EmbeddedServer(runtime) as started, ApiClient(started.url) as client:
        simulate(client, "beta", world, users=40, seed=1, progress=False)
        runtime.events.flush()  # a delivery: counted, and a snapshot kept
        yield started


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    return open_page(width=1400, height=1200)


def shown(page: Any) -> dict[str, Any]:
    """The picker's buttons, which is pressed, and the endpoint sections on the page."""
    return page.evaluate(
        """() => ({
            buttons: [...document.querySelectorAll("#picker button")]
                .map((b) => b.dataset.endpoint),
            pressed: [...document.querySelectorAll("#picker button[aria-pressed='true']")]
                .map((b) => b.dataset.endpoint),
            sections: [...document.querySelectorAll("section.endpoint")]
                .map((s) => s.dataset.endpoint),
            variants: [...document.querySelectorAll("section.endpoint tr[data-variant]")]
                .map((r) => r.dataset.variant),
        })"""
    )


def stats(server: EmbeddedServer, name: str) -> dict[str, Any]:
    return httpx.post(f"{server.url}/stats", json={"endpoint_name": name}).json()


def test_a_person_picks_the_second_endpoint_and_acts_on_it(page, server) -> None:
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    # GIVEN a server of two endpoints, WHEN a browser opens /dashboard
    page.goto(f"{server.url}/dashboard")
    page.wait_for_selector("section[data-endpoint='alpha'] tr[data-variant='A1']")
    # THEN it offers both and shows the first alone
    assert shown(page) == {
        "buttons": ["alpha", "beta"],
        "pressed": ["alpha"],
        "sections": ["alpha"],
        "variants": ["A1", "A2"],
    }

    # WHEN the person picks the second
    page.click("#picker button[data-endpoint='beta']")
    page.wait_for_selector("section[data-endpoint='beta'] tr[data-variant='B1']")
    # THEN beta alone is shown, with beta's own counters from /stats
    assert shown(page) == {
        "buttons": ["alpha", "beta"],
        "pressed": ["beta"],
        "sections": ["beta"],
        "variants": ["B1", "B2", "B3"],
    }
    for metrics in stats(server, "beta")["variant_metrics"]:
        cell = page.locator(
            f"tr[data-variant='{metrics['variant_name']}'] td[data-field='invocation_count']"
        )
        assert int(cell.get_attribute("data-value")) == metrics["invocation_count"]
    assert "endpoint=beta" in page.url

    # WHEN the person pauses it from the page
    lifecycle = page.locator("section[data-endpoint='beta'] .lifecycle")
    lifecycle.locator("button[data-action='pause']").click()
    page.wait_for_function(
        "document.querySelector(\"section[data-endpoint='beta'] [data-field='state']\")"
        ".dataset.value === 'paused'"
    )
    # THEN beta is paused and alpha untouched
    show = {
        name: httpx.post(f"{server.url}/admin/show", json={"endpoint_name": name}).json()
        for name in ("alpha", "beta")
    }
    assert (show["alpha"]["state"], show["beta"]["state"]) == ("running", "paused")

    # AND a reload keeps the endpoint picked
    page.reload()
    page.wait_for_selector("section[data-endpoint='beta'] tr[data-variant='B1']")
    assert shown(page)["pressed"] == ["beta"]
    assert failures == []
