"""An endpoint configured for continuous rewards and a short attribution window, through the
routes: what a conversion answers, and what /stats then shows."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from abtest.clock import ManualClock
from abtest.embedded.wiring import Runtime
from abtest.http.resolver import build_resolver
from tests.api_gateway import api_event, call
from tests.embedded.helpers import ENDPOINT, write_config
from tests.http.conftest import Route

WINDOW = 60


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory, clock: ManualClock) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("continuous")
    config = write_config(
        folder,
        variants={
            "Champion1": "tests.embedded.helpers:constant",
            "Challenger1": "tests.embedded.helpers:constant",
        },
        extra_endpoint=f'reward = "continuous"\nattribution_window_seconds = {WINDOW}\n',
    )
    with Runtime(config, folder / "data", clock=clock, rng=random.Random(0)) as runtime:
        yield {
            name: Route(build_resolver({name: use_case}))
            for name, use_case in runtime.use_cases.items()
        } | {"runtime": runtime}


def post(routes: dict, route: str, body: dict) -> tuple[int, dict]:
    return call(routes[route], api_event(f"/{route}", body))


def test_a_continuous_endpoint_takes_12_5_counts_late_conversions_and_shows_them(routes, clock):
    invoked = post(routes, "invocation", {"endpoint_name": ENDPOINT, "user_id": "u1", "data": "x"})
    variant = invoked[1]["endpoint_variant"]

    code, on_time = post(
        routes, "conversion", {"endpoint_name": ENDPOINT, "user_id": "u1", "reward": 12.5}
    )
    assert code == 200 and (on_time["reward"], on_time["late"]) == (12.5, False)
    clock.advance(WINDOW + 1)
    code, late = post(
        routes, "conversion", {"endpoint_name": ENDPOINT, "user_id": "u1", "reward": -3.0}
    )
    assert code == 200 and late["late"] is True

    routes["runtime"].events.flush()  # seal and aggregate now
    code, stats = post(routes, "stats", {"endpoint_name": ENDPOINT})
    assert code == 200
    assert stats["settings"] == {
        "reward": "continuous",
        "unit": "user",
        "attribution_window_seconds": WINDOW,
        "planned_sample_size": 40_000,
        "auto_conclude": False,
        "max_error_rate": None,
        "max_latency_p99_ms": None,
    }
    shown = {m["variant_name"]: m for m in stats["variant_metrics"]}[variant]
    assert {k: shown[k] for k in ("users", "converted_users", "invocation_count")} == {
        "users": 1,
        "converted_users": 1,
        "invocation_count": 1,
    }
    assert (shown["conversion_count"], shown["reward_sum"], shown["late_conversions"]) == (
        1,
        12.5,
        1,
    )


def test_stats_shows_the_continuous_default_a_top_two_endpoint_runs_with(tmp_path, clock):
    # No strategy_params in the file: a continuous endpoint gets TopTwoThompson's beta for
    # continuous rewards (0.7, bench/decisions.py), and /stats says so.
    config = write_config(
        tmp_path, strategy="TopTwoThompson", extra_endpoint='reward = "continuous"\n'
    )
    with Runtime(config, tmp_path / "data", clock=clock, rng=random.Random(0)) as runtime:
        stats = Route(build_resolver({"stats": runtime.use_cases["stats"]}))
        code, body = call(stats, api_event("/stats", {"endpoint_name": ENDPOINT}))
    assert code == 200
    assert (body["strategy"], body["strategy_params"]) == (
        "TopTwoThompson",
        {"beta": 0.7, "floor": 0.01},
    )
