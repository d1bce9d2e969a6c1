"""A slow Python-callable model stalls nothing else, and is cut off at its timeout with a 502."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from abtest.embedded.config import load_config
from abtest.errors import ConfigError
from tests.embedded.helpers import ENDPOINT, write_config


def invoke(url: str, seconds: float) -> httpx.Response:
    body = {"endpoint_name": ENDPOINT, "data": json.dumps({"sleep": seconds})}
    return httpx.post(f"{url}/invocation", json=body, timeout=30)


def test_a_slow_model_call_stalls_no_other_request_and_times_out_as_a_502(start_server) -> None:
    # GIVEN an endpoint whose model may take 1 s at most
    server = start_server(
        variants={"Sleepy": "tests.embedded.helpers:sleepy"},
        extra_endpoint="model_timeout_seconds = 1",
    )
    slow: list[tuple[httpx.Response, float]] = []

    def call_slow() -> None:
        began = time.monotonic()
        slow.append((invoke(server.url, 6), time.monotonic() - began))

    # WHEN one call takes 6 s, and meanwhile /health and a fast invocation are asked for
    caller = threading.Thread(target=call_slow)
    caller.start()
    time.sleep(0.3)
    began = time.monotonic()
    health = httpx.get(f"{server.url}/health", timeout=30)
    health_seconds = time.monotonic() - began
    fast = invoke(server.url, 0)
    caller.join(timeout=30)

    # THEN /health and the fast call answer at once, and the slow one is a 502 naming the
    # variant at its 1 s timeout, not after 6 s
    assert health.status_code == 200
    assert health_seconds < 2, health_seconds  # it waited out the 6 s call before
    assert fast.status_code == 200, fast.text
    response, seconds = slow[0]
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "model_error"
    assert "'Sleepy' did not answer within 1 s" in response.json()["message"]
    assert seconds < 4, seconds


@pytest.mark.parametrize("value", ["0", "-1", '"10"', "true"])
def test_a_bad_model_timeout_stops_the_config(tmp_path, value: str) -> None:
    path = write_config(tmp_path, extra_endpoint=f"model_timeout_seconds = {value}")

    with pytest.raises(ConfigError, match=r"endpoint\.model_timeout_seconds"):
        load_config(path)


def test_the_model_timeout_defaults_to_30_seconds(tmp_path) -> None:
    assert load_config(write_config(tmp_path)).endpoint.model_timeout_seconds == 30.0
