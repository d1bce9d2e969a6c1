"""Variants over time on the embedded server, over HTTP: a challenger added to a running
experiment gets traffic without resetting anyone's counters and survives a restart; weights
set by hand; a variant dropped from the config is retired, and a restart rejects nothing."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.embedded.helpers import ENDPOINT, write_config

NAME = {"endpoint_name": ENDPOINT}
DATA = {"instances": ["good"]}
ADDED = "tests.embedded.helpers:constant"  # answers [1]: the demo's models answer otherwise


def post(server: EmbeddedServer, path: str, body: dict, token: str | None = None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def invoke(server: EmbeddedServer, user: str) -> dict:
    response = post(server, "/invocation", {**NAME, "user_id": user, "data": DATA})
    assert response.status_code == 200, response.text
    return response.json()


def served(server: EmbeddedServer, users: range) -> dict[str, str]:
    return {str(u): invoke(server, str(u))["endpoint_variant"] for u in users}


def counted(shown: dict) -> dict[str, tuple[int, int]]:
    return {
        v["variant_name"]: (v["users"], v["invocation_count"]) for v in shown["variant_metrics"]
    }


def wait_aggregated(server: EmbeddedServer, users: int) -> dict:
    """The endpoint once aggregation counted `users` users (the buffer seals every 0.2 s)."""
    runtime = server.runtime
    runtime.events.flush()
    shown = post(server, "/admin/show", NAME).json()
    assert sum(u for u, _ in counted(shown).values()) == users, counted(shown)
    return shown


# Over 3 s on a shared machine (two servers, a hundred requests).
@pytest.mark.slow(seconds=10)
def test_an_added_variant_gets_traffic_keeps_everyone_s_counters_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    with EmbeddedServer(Runtime(config, data, rng=random.Random(0))) as server:
        # GIVEN a running experiment with counted users
        before = served(server, range(20))
        counts_before = counted(wait_aggregated(server, 20))

        # WHEN a challenger is added, its model named as in the config
        added = post(
            server,
            "/admin/add-variant",
            {**NAME, "variant": "Challenger2", "model": ADDED, "reason": "new model"},
        )

        # THEN it is there at zero, the others' counters untouched, and new users reach it
        assert added.status_code == 200, added.text
        body = added.json()
        assert body["variants"] == ["Champion1", "Challenger1", "Challenger2"]
        assert body["added"] == {"Challenger2": ADDED}
        assert counted(body) == {**counts_before, "Challenger2": (0, 0)}
        assert body["allocation"]["Challenger2"] == pytest.approx(1 / 3)  # its warm-up share
        assert body["audit_log"][-1]["action"] == "add-variant"
        after = served(server, range(20, 80))
        # P(none of 60 new users gets a 1/3 share) = (2/3)^60 < 1e-10
        newcomers = [u for u, v in after.items() if v == "Challenger2"]
        assert newcomers
        assert invoke(server, newcomers[0])["predictions"] == [1]  # its model answered
        # existing users keep their variant
        assert served(server, range(20)) == before
        shown = wait_aggregated(server, 80)

    # WHEN the server restarts from the same, unchanged config
    with EmbeddedServer(Runtime(config, data, rng=random.Random(1))) as server:
        again = post(server, "/admin/show", NAME).json()
        # THEN nothing was dropped or reset, and the added variant's model still answers
        assert again["variants"] == ["Champion1", "Challenger1", "Challenger2"]
        assert again["retired"] == []
        assert counted(again) == counted(shown)
        assert (again["version"], len(again["audit_log"])) == (1, 1)
        repeat = invoke(server, newcomers[0])
        assert (repeat["endpoint_variant"], repeat["predictions"]) == ("Challenger2", [1])

    rejected = data / "events" / "rejected"
    assert not rejected.exists() or list(rejected.iterdir()) == []


def test_add_variant_refusals_name_the_field(start_server) -> None:
    server = start_server()

    for body, status, field in [
        ({"variant": "Challenger2"}, 400, "model"),  # the server must be able to call it
        ({"variant": "Challenger2", "model": "not a model"}, 400, "model"),
        ({"variant": "Challenger2", "model": "no_such_module_x:f"}, 400, "model"),
        ({"variant": "Challenger2", "model": "https://[::1"}, 400, "model"),  # no closing ]
        ({"variant": "Challenger2", "model": "http://"}, 400, "model"),
        ({"variant": "Champion1", "model": ADDED}, 409, "variant"),
        ({"variant": "bad name", "model": ADDED}, 400, "variant"),
        ({"variant": "Challenger2", "model": ADDED, "initial_weight": -1}, 400, "initial_weight"),
    ]:
        response = post(server, "/admin/add-variant", {**NAME, **body})
        assert response.status_code == status, (body, response.text)
        assert response.json()["details"][0]["field"] == field, body
    shown = post(server, "/admin/show", NAME).json()
    assert (shown["variants"], shown["audit_log"]) == (["Champion1", "Challenger1"], [])

    post(server, "/admin/conclude", {**NAME, "winner": "Champion1"})
    final = post(server, "/admin/add-variant", {**NAME, "variant": "Challenger2", "model": ADDED})
    assert final.status_code == 409
    assert final.json()["details"][0]["field"] == "state"


def test_concurrent_adds_lose_nothing(start_server) -> None:
    # Each add is a compare-and-set on what it read: one that read a version another add
    # replaced is refused (409, "changed concurrently"), never written over the other.
    from concurrent.futures import ThreadPoolExecutor

    server = start_server()
    names = [f"Challenger{i}" for i in range(2, 6)]

    def add(name: str) -> int:
        body = {**NAME, "variant": name, "model": ADDED}
        return post(server, "/admin/add-variant", body).status_code

    with ThreadPoolExecutor(len(names)) as pool:
        answers = dict(zip(names, pool.map(add, names), strict=True))

    assert set(answers.values()) <= {200, 409}
    won = [n for n, status in answers.items() if status == 200]
    shown = post(server, "/admin/show", NAME).json()
    assert sorted(shown["variants"][2:]) == sorted(won)
    assert sorted(shown["added"]) == sorted(won)
    assert shown["version"] == len(shown["audit_log"]) == len(won)


def test_weights_over_http(start_server) -> None:
    server = start_server(strategy="WeightedSampling")

    response = post(server, "/admin/weights", {**NAME, "weights": {"Champion1": 3}})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["allocation"] == pytest.approx({"Champion1": 0.75, "Challenger1": 0.25})
    assert body["weights"] == {"Champion1": 3.0, "Challenger1": 1.0}
    assert "weights" in body["allowed_actions"]
    stats = post(server, "/stats", NAME).json()
    assert stats["allocation"] == pytest.approx({"Champion1": 0.75, "Challenger1": 0.25})
    for weights, status in [
        ({"Nope": 1}, 400),
        ({"Champion1": -1}, 400),
        ({"Champion1": 0, "Challenger1": 0}, 400),
        ({}, 400),
    ]:
        refused = post(server, "/admin/weights", {**NAME, "weights": weights})
        assert refused.status_code == status, (weights, refused.text)
        assert refused.json()["details"][0]["field"].startswith("weights"), refused.text


def test_weights_of_a_bandit_are_409_naming_the_strategy(start_server) -> None:
    server = start_server()  # ThompsonSampling

    assert "weights" not in post(server, "/admin/show", NAME).json()["allowed_actions"]
    response = post(server, "/admin/weights", {**NAME, "weights": {"Champion1": 3}})

    assert response.status_code == 409
    assert response.json()["details"][0]["field"] == "strategy"


# Over 3 s on a shared machine (two servers).
@pytest.mark.slow(seconds=10)
def test_a_variant_dropped_from_the_config_is_retired_and_a_restart_rejects_nothing(
    tmp_path: Path, caplog
) -> None:
    # GIVEN users of both variants, their events counted, one of them retired by a person
    data = tmp_path / "data"
    config = write_config(tmp_path)
    with EmbeddedServer(Runtime(config, data, rng=random.Random(0))) as server:
        before = served(server, range(16))
        assert set(before.values()) == {"Champion1", "Challenger1"}
        post(server, "/admin/retire-variant", {**NAME, "variant": "Challenger1"})
        shown = wait_aggregated(server, 16)

    # WHEN the config drops it and the server restarts, twice
    config = write_config(tmp_path, variants={"Champion1": "abtest.demo.reviews:champion"})
    for seed in (1, 2):
        with EmbeddedServer(Runtime(config, data, rng=random.Random(seed))) as server:
            again = post(server, "/admin/show", NAME).json()

    # THEN nothing was rejected, its counters are kept and it stays retired
    assert "rejected" not in caplog.text
    rejected = data / "events" / "rejected"
    assert not rejected.exists() or list(rejected.iterdir()) == []
    assert again["retired"] == ["Challenger1"]
    assert counted(again) == counted(shown)
    assert [e["action"] for e in again["audit_log"]] == ["retire-variant"]


# Over 3 s on a shared machine (two servers).
@pytest.mark.slow(seconds=10)
def test_a_variant_only_dropped_from_the_config_is_retired_by_registration(
    tmp_path: Path, caplog
) -> None:
    # GIVEN users of both variants, counted
    data = tmp_path / "data"
    with EmbeddedServer(Runtime(write_config(tmp_path), data, rng=random.Random(0))) as server:
        users = served(server, range(16))
        shown = wait_aggregated(server, 16)
    moved = [u for u, v in users.items() if v == "Challenger1"]
    assert moved

    # WHEN the config drops Challenger1 and the server restarts
    config = write_config(tmp_path, variants={"Champion1": "abtest.demo.reviews:champion"})
    with EmbeddedServer(Runtime(config, data, rng=random.Random(1))) as server:
        again = post(server, "/admin/show", NAME).json()
        # THEN one of its users converting before their next request still credits it
        credited = post(server, "/conversion", {**NAME, "user_id": moved[0]}).json()
        assert credited["endpoint_variant"] == "Challenger1"
        # and is reassigned on that next request
        assert invoke(server, moved[0])["endpoint_variant"] == "Champion1"
    # ... and a further start counts that conversion, rejecting nothing
    with EmbeddedServer(Runtime(config, data, rng=random.Random(2))) as server:
        last = post(server, "/admin/show", NAME).json()

    assert "rejected" not in caplog.text
    rejected = data / "events" / "rejected"
    assert not rejected.exists() or list(rejected.iterdir()) == []
    assert again["retired"] == last["retired"] == ["Challenger1"]
    assert counted(again) == counted(shown)
    metrics = {v["variant_name"]: v for v in last["variant_metrics"]}
    before = {v["variant_name"]: v for v in shown["variant_metrics"]}
    assert (
        metrics["Challenger1"]["conversion_count"] == before["Challenger1"]["conversion_count"] + 1
    )
    (entry,) = last["audit_log"]
    assert (entry["actor"], entry["action"], entry["details"]["variants"]) == (
        "registration",
        "retire-variant",
        ["Challenger1"],
    )


def test_an_added_model_takes_invocations_off_an_all_inline_loop(start_server) -> None:
    # Inline models run on the event loop; an added one runs on a model thread, which a
    # request on the loop would wait for: from the add on, invocations go to a thread.
    server = start_server(inline=True)
    assert server.runtime.models.all_inline

    body = {**NAME, "variant": "Challenger2", "model": "tests.embedded.helpers:thread_name"}
    assert post(server, "/admin/add-variant", body).status_code == 200

    assert not server.runtime.models.all_inline
    answers = [invoke(server, f"u{n}") for n in range(40)]
    threads = {
        a["predictions"]["thread"] for a in answers if a["endpoint_variant"] == "Challenger2"
    }
    assert threads and all(t.startswith("abtest-model") for t in threads)
