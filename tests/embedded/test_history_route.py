"""POST /history on the embedded server: each sealed buffer leaves a snapshot, readable over
HTTP with the counters, allocation and decision /stats had then; bad input is a 400."""

from __future__ import annotations

import httpx

from tests.embedded.helpers import ENDPOINT

CONSTANT = {
    "Champion1": "tests.embedded.helpers:constant",
    "Challenger1": "tests.embedded.helpers:constant",
}


def test_each_sealed_buffer_leaves_a_snapshot_readable_over_http(
    start_server, http: httpx.Client
) -> None:
    server = start_server(interval=3600, variants=CONSTANT)  # sealed by hand below
    for round_ in range(3):
        for n in range(4):
            body = {"endpoint_name": ENDPOINT, "user_id": f"u{round_}-{n}", "data": "good"}
            assert http.post(f"{server.url}/invocation", json=body).status_code == 200
        server.runtime.events.flush()

    answer = http.post(f"{server.url}/history", json={"endpoint_name": ENDPOINT, "limit": 2})
    stats = http.post(f"{server.url}/stats", json={"endpoint_name": ENDPOINT}).json()

    assert answer.status_code == 200, answer.text
    snapshots = answer.json()["snapshots"]
    assert [s["seq"] for s in snapshots] == [2, 3]  # the newest two, oldest first
    assert [sum(v["invocation_count"] for v in s["variants"]) for s in snapshots] == [8, 12]
    last = {v["variant_name"]: v for v in snapshots[-1]["variants"]}
    assert {name: v["allocation"] for name, v in last.items()} == stats["allocation"]
    for figures in stats["decision"]["variants"]:
        mine = last[figures["variant_name"]]
        assert mine["probability_best"] == figures["probability_best"]
        assert mine["estimate"] == figures.get("estimate", figures["posterior_mean"])
    assert snapshots[-1]["reason"] == stats["decision"]["reason"]


def test_bad_history_requests_name_the_field(start_server, http: httpx.Client) -> None:
    server = start_server()
    for body, field in (
        ({"endpoint_name": ENDPOINT, "limit": 0}, "limit"),
        ({"endpoint_name": ENDPOINT, "limit": "5"}, "limit"),
        ({"endpoint_name": ENDPOINT, "limit": 100_000}, "limit"),
        ({"limit": 5}, "endpoint_name"),
    ):
        answer = http.post(f"{server.url}/history", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["details"][0]["field"] == field
    unknown = http.post(f"{server.url}/history", json={"endpoint_name": "not-here"})
    assert unknown.status_code == 404
    assert http.get(f"{server.url}/history").status_code == 405
