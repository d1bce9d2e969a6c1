"""/dashboard in a real browser, after simulated traffic: the numbers on the page are /stats',
and the charts are drawn with /history's points.

Checking the HTML is not enough: the page is a script that fetches and draws, so only a
browser shows whether the figures arrive, land in the right cells and become charts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from abtest.demo.simulation import ApiClient, simulate
from abtest.demo.worlds import Bernoulli, TruthWorld
from abtest.embedded.dashboard import REFRESH_SECONDS
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.embedded.browser import keep_screenshot_if_failed
from tests.embedded.helpers import ENDPOINT

pytestmark = pytest.mark.slow  # a browser, and plotly.js's 4.8 MB

BATCHES = 6  # sealed buffers, so six snapshots in the history
CONFIG = f"""
[endpoint]
name = "{ENDPOINT}"
strategy = "TopTwoThompson"
warmup = 40

[event_log]
buffer_interval_seconds = 3600

[[variants]]
name = "Champion1"
model = "tests.embedded.helpers:constant"

[[variants]]
name = "Challenger1"
model = "tests.embedded.helpers:constant"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """An endpoint after 300 simulated users in six delivered batches (warm-up in the first)."""
    folder = tmp_path_factory.mktemp("dashboard")
    (folder / "endpoint.toml").write_text(CONFIG)
    runtime = Runtime(folder / "endpoint.toml", folder / "data", rng=random.Random(3))
    world = TruthWorld({"Champion1": Bernoulli(0.25), "Challenger1": Bernoulli(0.55)}, data={})
    with EmbeddedServer(runtime) as started, ApiClient(started.url) as client:
        for batch in range(BATCHES):
            simulate(client, ENDPOINT, world, users=50, seed=batch, progress=False)
            runtime.events.flush()  # a delivery: counted, and a snapshot kept
        yield started


WIDTH, HEIGHT = 1400, 1100


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    return open_page(width=WIDTH, height=HEIGHT)


@pytest.fixture(scope="module")
def opened(browser: Any, server: EmbeddedServer) -> Iterator[Any]:
    """/dashboard opened once for the tests that only read it (its figures, its charts).

    Each load costs the browser about 1.8 s of CPU, 1.3 s of it evaluating plotly.js (a
    page holding that script alone costs as much), whatever the test then reads; the page
    and the server's figures do not change under these tests.
    """
    shared = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    shared.set_default_timeout(15_000)
    open_dashboard(shared, server)
    yield shared
    shared.close()


@pytest.fixture
def dashboard(opened: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The opened /dashboard, its screenshot kept if the test using it fails."""
    yield opened
    keep_screenshot_if_failed(opened, request)


def open_dashboard(page: Any, server: EmbeddedServer) -> None:
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(f"{server.url}/dashboard")
    page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
    section = page.locator(f"section[data-endpoint='{ENDPOINT}']")
    assert section.locator(".error").inner_text() == ""
    assert failures == []  # no script error
    assert outside == []  # every file the page loads is served locally


def post(server: EmbeddedServer, route: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/{route}", json={"endpoint_name": ENDPOINT, **body})
    answer.raise_for_status()
    return answer.json()


def cell(page: Any, variant: str, field: str) -> Any:
    return page.locator(f"tr[data-variant='{variant}'] td[data-field='{field}']")


def shown_percent(text: str) -> float:
    return float(text.split("%")[0])


def test_the_numbers_on_the_page_are_those_of_stats(dashboard, server) -> None:
    # GIVEN an endpoint after simulated traffic, WHEN a browser opens /dashboard
    page = dashboard
    stats = post(server, "stats")
    figures = {v["variant_name"]: v for v in stats["decision"]["variants"]}
    # THEN each variant's row shows /stats' counters, rate and interval, P(best), allocation
    for metrics in stats["variant_metrics"]:
        name = metrics["variant_name"]
        for field in ("invocation_count", "conversion_count"):
            shown = cell(page, name, field)
            assert int(shown.get_attribute("data-value")) == metrics[field]
            assert int(shown.inner_text().replace(",", "")) == metrics[field]
        allocation = cell(page, name, "allocation")
        assert float(allocation.get_attribute("data-value")) == stats["allocation"][name]
        assert shown_percent(allocation.inner_text()) == pytest.approx(
            100 * stats["allocation"][name], abs=0.051
        )
        best = cell(page, name, "probability_best")
        assert float(best.get_attribute("data-value")) == figures[name]["probability_best"]
        rate = cell(page, name, "estimate")
        estimate = figures[name].get("estimate", figures[name]["posterior_mean"])
        low, high = figures[name].get("estimate_interval", figures[name]["credible_interval"])
        assert float(rate.get_attribute("data-value")) == estimate
        assert (float(rate.get_attribute("data-low")), float(rate.get_attribute("data-high"))) == (
            low,
            high,
        )
        assert shown_percent(rate.inner_text()) == pytest.approx(100 * estimate, abs=0.0051)
        # AND what the guardrails watch: the model calls' error rate and their p99 latency
        errors, rate_of_errors = cell(page, name, "error_rate"), metrics["error_rate"]
        assert rate_of_errors is not None and metrics["model_calls"] > 0
        assert float(errors.get_attribute("data-value")) == rate_of_errors
        assert errors.inner_text() == (
            f"{100 * rate_of_errors:.1f} % ({metrics['model_errors']:,} of "
            f"{metrics['model_calls']:,})"
        )
        p99, bound = cell(page, name, "latency_p99"), metrics["latency_ms"]["p99"]
        assert float(p99.get_attribute("data-value")) == bound
        assert p99.inner_text() == f"≤ {bound:,g} ms"
    # AND the decision with its advice
    decision = stats["decision"]
    said = page.locator("[data-field='decision']").inner_text()
    assert (decision["winner"] or decision["reason"].replace("_", " ")) in said
    assert page.locator("[data-field='advice']").inner_text() == decision["advice"]
    summary = page.locator(".summary").inner_text()
    assert summary.startswith(f"{stats['strategy']} (") and stats["status"] not in summary
    # the warm-up in the unit the endpoint counts (users by default)
    assert f"warm-up {stats['warmup']} {stats['settings']['unit']}s" in summary
    # AND when it was refreshed, in local time, year first, as the audit log's times
    updated = page.locator("#updated").inner_text()
    assert re.fullmatch(r"updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", updated), updated


def chart(page: Any, kind: str) -> dict[str, Any]:
    """What plotly drew into a chart: its traces' names and points, its shapes, and the
    number of traces in the SVG (so the library really rendered, not just got data)."""
    return page.evaluate(
        """(id) => {
            const node = document.getElementById(id);
            return {
                traces: node.data.map((t) => ({name: t.name, x: t.x.length, y: t.y})),
                shapes: node.layout.shapes.length,
                drawn: node.querySelectorAll(".scatterlayer .trace").length,
            };
        }""",
        f"chart-{kind}-{ENDPOINT}",
    )


def test_the_charts_are_drawn_with_the_history_points(dashboard, server) -> None:
    page = dashboard
    snapshots = post(server, "history")["snapshots"]
    assert len(snapshots) == BATCHES

    def series(variant: str, pick) -> list[Any]:
        return [pick({v["variant_name"]: v for v in s["variants"]}[variant]) for s in snapshots]

    allocation = chart(page, "allocation")
    probability = chart(page, "probability")
    estimate = chart(page, "estimate")
    for variant in ("Champion1", "Challenger1"):
        (drawn,) = [t for t in allocation["traces"] if t["name"] == variant]
        assert drawn["x"] == BATCHES
        assert drawn["y"] == series(variant, lambda v: v["allocation"])
        (drawn,) = [t for t in probability["traces"] if t["name"] == variant]
        assert drawn["y"] == series(variant, lambda v: v["probability_best"])
        (drawn,) = [t for t in estimate["traces"] if t["name"] == variant]
        assert drawn["y"] == series(variant, lambda v: v["estimate"])
        (band,) = [t for t in estimate["traces"] if t["name"] == f"{variant} 95 % interval"]
        assert band["y"] == series(variant, lambda v: v["estimate_interval"][0])
    for drawn in (allocation, probability, estimate):
        assert drawn["drawn"] == len(drawn["traces"])
        # The warm-up (the first delivery: fewer than 40 invocations each) is shaded.
        assert drawn["shapes"] == 1
    assert snapshots[0]["warming_up"] and not snapshots[-1]["warming_up"]


def test_the_page_refreshes_itself(page, server) -> None:
    # The page's own clock, run forward by the refresh interval instead of waited out (5 s
    # of each run's 7): the refresh is still the page's timer firing, as a user's would.
    page.clock.install()
    open_dashboard(page, server)
    page.clock.run_for(REFRESH_SECONDS * 1000)
    page.wait_for_function("Number(document.body.dataset.refreshed) >= 2")
