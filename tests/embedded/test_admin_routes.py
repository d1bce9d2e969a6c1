"""The admin routes on the embedded server: every transition over HTTP, the audit log's actor,
the token, and a restart that keeps the lifecycle."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from abtest.http.routes import ADMIN_ROUTE_NAMES
from tests.embedded.helpers import ENDPOINT, write_config

TOKEN = "admin-s3cret"
NAME = {"endpoint_name": ENDPOINT}


def post(server: EmbeddedServer, path: str, body: dict, token: str | None = None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


# Over 3 s on a shared machine (several servers or moto transactions).
@pytest.mark.slow
def test_every_transition_over_http_and_the_audit_log(start_server) -> None:
    server = start_server()

    assert post(server, "/admin/list", {}).json()["endpoints"] == [
        {
            "endpoint_name": ENDPOINT,
            "state": "running",
            "winner": None,
            "strategy": "ThompsonSampling",
            "variants": ["Champion1", "Challenger1"],
            "retired": [],
            "promotion": None,  # nothing to promote a winner in here (no model host)
        }
    ]
    paused = post(server, "/admin/pause", {**NAME, "reason": "retraining"})
    assert (paused.status_code, paused.json()["state"]) == (200, "paused")
    assert paused.json()["allocation"] == {"Champion1": 1.0, "Challenger1": 0.0}  # now
    assert paused.json()["allowed_actions"] == [
        "resume",
        "conclude",
        "retire-variant",
        "add-variant",
    ]
    assert post(server, "/admin/pause", NAME).status_code == 409
    assert post(server, "/admin/resume", NAME).json()["state"] == "running"
    illegal = post(server, "/admin/resume", NAME)
    assert illegal.status_code == 409
    assert "is running: cannot resume; allowed: pause, conclude" in illegal.json()["message"]
    no_winner = post(server, "/admin/conclude", NAME)
    assert no_winner.status_code == 409
    assert no_winner.json()["details"][0]["field"] == "winner"
    concluded = post(server, "/admin/conclude", {**NAME, "winner": "Challenger1"}).json()
    assert (concluded["state"], concluded["winner"], concluded["version"]) == (
        "concluded",
        "Challenger1",
        3,
    )
    assert concluded["allowed_actions"] == []
    for action in ("pause", "resume", "conclude"):
        final = post(server, f"/admin/{action}", {**NAME, "winner": "Champion1"})
        assert final.status_code == 409
        assert "is concluded" in final.json()["message"]

    shown = post(server, "/admin/show", NAME).json()
    assert [(e["actor"], e["action"], e["reason"]) for e in shown["audit_log"]] == [
        ("local", "pause", "retraining"),
        ("local", "resume", ""),
        ("local", "conclude", ""),
    ]
    assert [v["variant_name"] for v in shown["variant_metrics"]] == ["Champion1", "Challenger1"]
    # The winner now serves every user
    served = post(
        server, "/invocation", {**NAME, "user_id": "u9", "data": {"instances": ["great"]}}
    ).json()
    assert (served["endpoint_variant"], served["assignment"]) == ("Challenger1", "concluded")


def test_bad_admin_bodies_are_400_naming_the_field(start_server) -> None:
    server = start_server()

    for path, body, field in [
        ("/admin/pause", {}, "endpoint_name"),
        ("/admin/pause", {**NAME, "reason": 5}, "reason"),
        ("/admin/conclude", {**NAME, "winner": ""}, "winner"),
        ("/admin/show", {"endpoint_name": "bad name"}, "endpoint_name"),
    ]:
        response = post(server, path, body)
        assert response.status_code == 400, (path, body)
        assert response.json()["details"][0]["field"] == field
    assert post(server, "/admin/show", {"endpoint_name": "other"}).status_code == 404


@pytest.fixture
def guarded(tmp_path: Path):
    runtime = Runtime(write_config(tmp_path), tmp_path / "data", rng=random.Random(0))
    with EmbeddedServer(runtime, token=TOKEN) as server:
        yield server


@pytest.mark.parametrize("token", [None, "wrong"])
def test_admin_routes_need_the_token(guarded, token) -> None:
    for route in ADMIN_ROUTE_NAMES:
        response = post(guarded, f"/admin/{route}", NAME, token)
        assert response.status_code == 401, route
    assert post(guarded, "/admin/show", NAME, TOKEN).json()["state"] == "running"


def test_the_audit_log_names_the_token_not_its_secret(guarded) -> None:
    post(guarded, "/admin/pause", NAME, TOKEN)

    [entry] = post(guarded, "/admin/show", NAME, TOKEN).json()["audit_log"]

    assert entry["actor"].startswith("token:")
    assert TOKEN not in entry["actor"]


def test_a_restart_keeps_the_lifecycle(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    with EmbeddedServer(Runtime(config, data, rng=random.Random(0))) as server:
        post(server, "/admin/pause", NAME)

    with EmbeddedServer(Runtime(config, data, rng=random.Random(0))) as server:
        shown = post(server, "/admin/show", NAME).json()

    assert (shown["state"], len(shown["audit_log"])) == ("paused", 1)


# Over 3 s on a shared machine (several servers or moto transactions).
@pytest.mark.slow
def test_a_restart_after_retiring_a_variant_rejects_nothing(tmp_path: Path, caplog) -> None:
    # GIVEN users on both variants, one of them retired, and a conversion credited to it after
    config, data = write_config(tmp_path), tmp_path / "data"
    data_body = {"instances": ["good"]}
    with EmbeddedServer(Runtime(config, data, rng=random.Random(0))) as server:
        served = {
            user: post(server, "/invocation", {**NAME, "user_id": user, "data": data_body}).json()
            for user in map(str, range(12))
        }
        retired_users = [u for u, r in served.items() if r["endpoint_variant"] == "Challenger1"]
        assert retired_users
        retired = post(server, "/admin/retire-variant", {**NAME, "variant": "Challenger1"})
        assert retired.json()["retired"] == ["Challenger1"]
        credited = post(server, "/conversion", {**NAME, "user_id": retired_users[0]}).json()
        assert credited["endpoint_variant"] == "Challenger1"
        again = post(
            server, "/invocation", {**NAME, "user_id": retired_users[0], "data": data_body}
        )
        assert again.json()["endpoint_variant"] == "Champion1"

    # WHEN the server starts again from the same config and data dir
    with EmbeddedServer(Runtime(config, data, rng=random.Random(0))) as server:
        shown = post(server, "/admin/show", NAME).json()

    # THEN nothing was rejected, and the retired variant's events all counted
    assert "rejected" not in caplog.text
    rejected = data / "events" / "rejected"
    assert not rejected.exists() or list(rejected.iterdir()) == []
    assert shown["retired"] == ["Challenger1"]
    counters = {v["variant_name"]: v for v in shown["variant_metrics"]}
    assert counters["Challenger1"]["invocation_count"] == len(retired_users)
    assert counters["Challenger1"]["conversion_count"] == 1
    assert counters["Champion1"]["invocation_count"] == 12 - len(retired_users) + 1
