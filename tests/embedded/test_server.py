"""The embedded server over real HTTP on 127.0.0.1: the API, its errors, its documents."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from abtest.embedded import docs as docs_page
from abtest.errors import StoreUnavailableError
from tests.embedded.helpers import ENDPOINT, counts_by_variant, logged_events, stats_counts

PAYLOAD = {"instances": ["battery lasted months, setup manual detailed"], "configuration": {"k": 1}}


def invocation(user: str, **extra) -> dict:
    return {"endpoint_name": ENDPOINT, "user_id": user, "data": json.dumps(PAYLOAD), **extra}


def test_invocation_conversion_and_stats_round_trip(start_server, http: httpx.Client) -> None:
    # GIVEN the demo endpoint served on a free port
    server = start_server()
    # WHEN a user is invoked twice and converts once (posting the response back)
    first = http.post(f"{server.url}/invocation", json=invocation("alice"))
    assert first.status_code == 200
    body = first.json()
    assert body["assignment"] == "new"
    assert body["endpoint_variant"] in ("Champion1", "Challenger1")
    assert body["predictions"][0]["label"] in (["__label__1"], ["__label__0"])
    again = http.post(f"{server.url}/invocation", json=invocation("alice")).json()
    converted = http.post(f"{server.url}/conversion", json=body)
    repeated = http.post(f"{server.url}/conversion", json=body)
    # THEN the user kept the variant, and the repeated conversion is flagged duplicate
    assert (again["assignment"], again["endpoint_variant"]) == (
        "existing",
        body["endpoint_variant"],
    )
    assert converted.status_code == 200
    assert (converted.json()["duplicate"], repeated.json()["duplicate"]) == (False, True)
    # AND once the log is sealed, /stats counts 2 invocations and 1 conversion
    server.runtime.events.flush()
    stats = http.post(f"{server.url}/stats", json={"endpoint_name": ENDPOINT}).json()
    assert stats_counts(stats) == {body["endpoint_variant"]: (2, 1)}
    assert stats_counts(stats) == counts_by_variant(logged_events(server.runtime.data_dir))


# One case over HTTP; every case runs in-process through the same resolver
# (tests/http/test_bad_input.py).
@pytest.mark.parametrize(
    ("route", "body", "status", "field"),
    [
        ("invocation", {"endpoint_name": ENDPOINT, "user_id": 7, "data": "{}"}, 400, "user_id"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    start_server, http: httpx.Client, route: str, body: dict, status: int, field: str
) -> None:
    server = start_server()
    response = http.post(f"{server.url}/{route}", json=body)
    assert response.status_code == status
    error = response.json()
    assert field in error["message"]
    assert field in [d["field"] for d in error["details"]]


@pytest.mark.parametrize(
    ("content", "status", "error"),
    [
        (b"{not json", 400, "bad_request"),
        (b"\xff\xfe\x00", 400, "bad_request"),
        (b"[1, 2]", 400, "bad_request"),
        (b"x" * (6 * 1024 * 1024 + 1), 413, "payload_too_large"),
    ],
)
def test_unparseable_and_oversized_bodies_are_refused_as_json(
    start_server, http: httpx.Client, content: bytes, status: int, error: str
) -> None:
    server = start_server()
    response = http.post(f"{server.url}/invocation", content=content)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == error


def test_wrong_method_and_unknown_path(start_server, http: httpx.Client) -> None:
    server = start_server()
    assert http.get(f"{server.url}/invocation").status_code == 405
    missing = http.post(f"{server.url}/invocations", json={})
    assert missing.status_code == 404
    assert "POST /invocation" in missing.json()["message"]


def test_a_failing_model_is_a_502_naming_the_variant(start_server, http: httpx.Client) -> None:
    server = start_server(
        variants={
            "Good": "tests.embedded.helpers:constant",
            "Broken": "tests.embedded.helpers:broken",
        }
    )
    response = http.post(
        f"{server.url}/invocation", json=invocation("bob", endpoint_variant="Broken")
    )
    assert response.status_code == 502
    assert response.json()["error"] == "model_error"
    assert "'Broken'" in response.json()["message"]
    ok = http.post(f"{server.url}/invocation", json=invocation("bob", endpoint_variant="Good"))
    assert (ok.status_code, ok.json()["predictions"]) == (200, [1])


def test_openapi_document_and_docs_are_served(start_server, http: httpx.Client) -> None:
    server = start_server()
    document = http.get(f"{server.url}/openapi.json").json()
    assert {"/invocation", "/conversion", "/stats"} <= set(document["paths"])
    assert "post" in document["paths"]["/invocation"]
    docs = http.get(f"{server.url}/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text
    assert "https://" not in docs.text  # everything the page loads is served locally
    for asset, content_type in docs_page.ASSETS.items():
        assert asset in docs.text
        served = http.get(f"{server.url}{asset}")
        assert served.status_code == 200 and served.content
        assert served.headers["content-type"] == content_type
    assert http.get(f"{server.url}/health").json()["endpoint_names"] == [ENDPOINT]


@pytest.mark.parametrize("models", ["callables", "http"])
def test_concurrent_requests_each_get_their_own_answer(start_server, model_url, models) -> None:
    # GIVEN 8 client threads, each with new users, at once, served on worker threads
    variants = None
    if models == "http":
        variants = {"Champion1": f"{model_url}/a", "Challenger1": f"{model_url}/b"}
    server = start_server(interval=0.05, variants=variants)
    answers: dict[str, list[str]] = {}
    failures: list[str] = []

    def client(thread: int) -> None:
        with httpx.Client(timeout=30) as http:
            for n in range(15):
                user = f"t{thread}-u{n}"
                for _ in range(2):
                    response = http.post(f"{server.url}/invocation", json=invocation(user))
                    if response.status_code != 200 or response.json()["user_id"] != user:
                        failures.append(f"{user}: {response.status_code} {response.text[:200]}")
                        return
                    answers.setdefault(user, []).append(response.json()["endpoint_variant"])

    threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN every response answered its own request, each user kept one variant,
    assert failures == []
    assert len(answers) == 120
    assert all(len(set(variants)) == 1 for variants in answers.values())
    # AND every invocation was logged and counted once
    server.runtime.events.flush()
    stats = httpx.post(f"{server.url}/stats", json={"endpoint_name": ENDPOINT}).json()
    assert sum(n for n, _ in stats_counts(stats).values()) == 240


def test_an_http_model_variant_is_served_and_its_failure_is_a_502(
    start_server, http: httpx.Client, model_url: str
) -> None:
    server = start_server(
        variants={"Local": "tests.embedded.helpers:constant", "Remote": f"{model_url}/invocations",
                  "Down": f"{model_url}/fail"}
    )  # fmt: skip
    remote = http.post(f"{server.url}/invocation", json=invocation("c", endpoint_variant="Remote"))
    assert remote.status_code == 200
    assert remote.json()["predictions"] == {
        "got": json.dumps(PAYLOAD),
        "content_type": "application/json",
    }
    down = http.post(f"{server.url}/invocation", json=invocation("c", endpoint_variant="Down"))
    assert down.status_code == 502
    assert "'Down'" in down.json()["message"]


def test_health_shows_fallbacks_model_errors_and_duplicates(
    start_server, http: httpx.Client, monkeypatch
) -> None:
    # GIVEN a served endpoint with one broken variant
    server = start_server(
        variants={
            "Good": "tests.embedded.helpers:constant",
            "Broken": "tests.embedded.helpers:broken",
        }
    )
    assert http.get(f"{server.url}/health").json()["counts"] == {
        "Fallbacks": 0,
        "ModelErrors": 0,
        "DuplicateConversions": 0,
        "UnloggedInvocations": 0,
        "MostlyRejectedObjects": 0,
    }
    answers: list[httpx.Response] = []

    def invoke(user: str, **extra: str) -> httpx.Response:
        answers.append(http.post(f"{server.url}/invocation", json=invocation(user, **extra)))
        return answers[-1]

    # WHEN the broken variant fails, a conversion is repeated, and the store goes down
    assert invoke("a", endpoint_variant="Broken").status_code == 502
    served = next(r for n in range(20) if (r := invoke(f"c{n}")).status_code == 200).json()
    for _ in range(2):
        assert http.post(f"{server.url}/conversion", json=served).status_code == 200

    def down(*args: object) -> None:
        raise StoreUnavailableError("sqlite: database is locked")

    monkeypatch.setattr(server.runtime.store, "get_assignment", down)
    fallbacks = [invoke(f"d{n}") for n in range(4)]  # the endpoint's weights route them
    # THEN /health counts each, for a person to see
    assert all(r.json()["assignment"] == "fallback" for r in fallbacks if r.status_code == 200)
    assert http.get(f"{server.url}/health").json()["counts"] == {
        "Fallbacks": 4,
        "ModelErrors": sum(r.status_code == 502 for r in answers),
        "DuplicateConversions": 1,
        "UnloggedInvocations": 0,
        "MostlyRejectedObjects": 0,
    }


def test_stop_answers_and_counts_a_request_in_flight_before_it_returns(
    start_server, tmp_path
) -> None:
    # GIVEN a server whose model takes half a second, and a request in flight on it
    server = start_server(variants={"Sleepy": "tests.embedded.helpers:sleepy"})
    body = {"endpoint_name": ENDPOINT, "data": json.dumps({"sleep": 0.5}), "user_id": "u1"}
    answers: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{server.url}/invocation", json=body))
    )
    caller.start()
    state = server._server.server_state
    while not state.tasks:  # the request's task runs: the model is being called
        threading.Event().wait(0.005)

    # WHEN the server is stopped meanwhile (the prompt stop takes uvicorn's own way then)
    server.stop()
    caller.join(timeout=30)

    # THEN the request got its answer, and the stop sealed and counted its event
    assert [a.status_code for a in answers] == [200], answers
    again = start_server(
        data_dir=tmp_path / "data", variants={"Sleepy": "tests.embedded.helpers:sleepy"}
    )
    stats = httpx.post(f"{again.url}/stats", json={"endpoint_name": ENDPOINT}).json()
    assert stats_counts(stats) == {"Sleepy": (1, 0)}
