"""The guardrails end to end on the embedded server: a model failing 20 % of its calls, or
slow on 10 % of them, is demoted by the first aggregation that has the evidence, served
to no new user, never named the winner, shown with why, and reinstated by a person."""

from __future__ import annotations

import random
from pathlib import Path

import httpx

from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.embedded.helpers import CLOCK, ENDPOINT, write_config

NAME = {"endpoint_name": ENDPOINT}
DATA = {"instances": ["great"]}


_CLIENT = httpx.Client(timeout=30)  # one keep-alive connection: hundreds of requests


def post(server: EmbeddedServer, path: str, body: dict) -> httpx.Response:
    return _CLIENT.post(f"{server.url}{path}", json=body)


def variants(stats: dict) -> dict[str, dict]:
    return {v["variant_name"]: v for v in stats["variant_metrics"]}


def test_a_model_failing_20_percent_of_calls_is_demoted_never_winner_and_reinstated(
    start_server,
) -> None:
    server = start_server(
        strategy="WeightedSampling",
        variants={"Champion1": "tests.embedded.helpers:constant",
                  "Challenger1": "tests.embedded.helpers:flaky"},
        extra_endpoint="max_error_rate = 0.05",
    )  # fmt: skip
    served: dict[str, list[str]] = {"Champion1": [], "Challenger1": []}
    failed = 0
    for n in range(200):
        answer = post(server, "/invocation", {**NAME, "user_id": f"u{n}", "data": DATA})
        if answer.status_code == 502:
            assert "Challenger1" in answer.json()["message"]
            failed += 1
            continue
        served[answer.json()["endpoint_variant"]].append(f"u{n}")
    # The flaky variant converts every user it served, the champion none: on conversions
    # alone the decision would call the flaky one the winner.
    for user in served["Challenger1"]:
        assert post(server, "/conversion", {**NAME, "user_id": user}).status_code == 200
    assert failed > 0
    calls = len(served["Challenger1"]) + failed
    server.runtime.events.flush()  # one aggregation: the evidence is there

    stats = post(server, "/stats", NAME).json()
    flaky = variants(stats)["Challenger1"]
    assert (flaky["model_calls"], flaky["model_errors"]) == (calls, failed)
    assert abs(flaky["error_rate"] - 0.2) < 0.02  # every fifth call, of about 100
    # Every failed user was assigned and counted as a trial (intent to treat).
    assert flaky["users"] == calls
    assert flaky["demoted"] and "max_error_rate 0.05" in flaky["demoted"]
    assert variants(stats)["Champion1"]["demoted"] is None
    assert variants(stats)["Champion1"]["error_rate"] == 0.0
    assert stats["allocation"] == {"Champion1": 1.0, "Challenger1": 0.0}
    assert stats["decision"].get("winner") != "Challenger1"
    assert "Challenger1" not in str(stats["decision"].get("winner"))
    for n in range(10):  # new users get the champion only
        answer = post(server, "/invocation", {**NAME, "user_id": f"new{n}", "data": DATA})
        assert answer.json()["endpoint_variant"] == "Champion1"
    shown = post(server, "/admin/show", NAME).json()
    assert variants(shown)["Challenger1"]["demoted"] == flaky["demoted"]
    assert "reinstate" in shown["allowed_actions"]
    # The decision's winner cannot be the demoted variant, so concluding with it cannot either.
    concluded = post(server, "/admin/conclude", NAME)
    assert concluded.status_code == 409 or concluded.json()["winner"] != "Challenger1"
    if concluded.status_code == 200:
        return

    # A person reinstates it: it serves again; asking twice is a 409 naming the variant.
    reinstated = post(server, "/admin/reinstate", {**NAME, "variant": "Challenger1",
                                                   "reason": "driver fixed"})  # fmt: skip
    assert reinstated.status_code == 200, reinstated.text
    assert reinstated.json()["allocation"]["Challenger1"] > 0.0
    assert variants(reinstated.json())["Challenger1"]["demoted"] is None
    assert "reinstate" not in reinstated.json()["allowed_actions"]  # nothing demoted now
    entry = reinstated.json()["audit_log"][-1]
    assert (entry["actor"], entry["action"], entry["reason"]) == (
        "local",
        "reinstate",
        "driver fixed",
    )
    again = post(server, "/admin/reinstate", {**NAME, "variant": "Challenger1"})
    assert again.status_code == 409 and again.json()["details"][0]["field"] == "variant"
    # Fresh failures (manual calls of the same model count) demote it again; the old ones
    # do not count twice.
    fresh_failures = 0
    for n in range(10):
        answer = post(server, "/invocation", {**NAME, "user_id": f"m{n}", "data": DATA,
                                              "endpoint_variant": "Challenger1"})  # fmt: skip
        fresh_failures += answer.status_code == 502
    server.runtime.events.flush()
    assert variants(post(server, "/stats", NAME).json())["Challenger1"]["demoted"] is None
    for n in range(90):
        answer = post(server, "/invocation", {**NAME, "user_id": f"m{n}", "data": DATA,
                                              "endpoint_variant": "Challenger1"})  # fmt: skip
    server.runtime.events.flush()
    again = variants(post(server, "/stats", NAME).json())["Challenger1"]
    assert again["demoted"] and "over 100 calls" in again["demoted"]


def test_a_model_slow_on_10_percent_of_calls_breaches_a_500_ms_p99(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        strategy="WeightedSampling",
        variants={"Champion1": "tests.embedded.helpers:fast_by_clock",
                  "Challenger1": "tests.embedded.helpers:slow_by_clock"},
        extra_endpoint="max_latency_p99_ms = 500",
    )  # fmt: skip
    runtime = Runtime(config, tmp_path / "data", clock=CLOCK, rng=random.Random(1))
    with EmbeddedServer(runtime) as server:
        # One slow call is no evidence: its first ten calls include one at 800 ms.
        for n in range(10):
            post(server, "/invocation", {**NAME, "user_id": f"s{n}", "data": DATA,
                                         "endpoint_variant": "Challenger1"})  # fmt: skip
        runtime.events.flush()
        stats = post(server, "/stats", NAME).json()
        assert variants(stats)["Challenger1"]["latency_ms"]["p99"] == 1000.0
        assert variants(stats)["Challenger1"]["demoted"] is None
        for n in range(250):
            post(server, "/invocation", {**NAME, "user_id": f"u{n}", "data": DATA})
        runtime.events.flush()
        stats = post(server, "/stats", NAME).json()

    slow, fast = variants(stats)["Challenger1"], variants(stats)["Champion1"]
    # 3 ms calls sit in the (2, 5] bucket, 800 ms ones in (500, 1000]
    assert fast["latency_ms"] == {"p50": 5.0, "p95": 5.0, "p99": 5.0}
    assert slow["latency_ms"] == {"p50": 5.0, "p95": 1000.0, "p99": 1000.0}
    assert slow["demoted"] and "max_latency_p99_ms 500" in slow["demoted"]
    assert fast["demoted"] is None
    assert stats["allocation"]["Challenger1"] == 0.0
