"""schemathesis against the embedded server's own OpenAPI document, over real HTTP.

Every operation gets schema-valid and schema-violating bodies, and every answer must be
no server error, a documented status, and a body that fits the document: stateless
cases, then stateful runs chaining the answers into further calls. Bounded in examples
and derandomized, so it takes seconds and fails the same way each time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from abtest.http.routes import ALL_ROUTES
from tests.embedded.helpers import ENDPOINT, write_config

# Slow: generated requests against a live server, tens of seconds.
pytestmark = pytest.mark.slow

MODELS = {
    "Champion1": "tests.embedded.helpers:echo",
    "Challenger1": "tests.embedded.helpers:constant",
}
BOUNDED = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def serve_endpoint(tmp_path_factory) -> Iterator[EmbeddedServer]:
    folder = tmp_path_factory.mktemp("schemathesis")
    runtime = Runtime(write_config(folder, variants=MODELS), folder / "data", rng=random.Random(0))
    with EmbeddedServer(runtime) as server:
        yield server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from serve_endpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def served_for_admin(tmp_path_factory):
    """The admin routes' cases change the endpoint their examples name, the served one (a
    variant added with the demo's model, which fails on other data with a 502; a pause; a
    conclusion): on a server of their own, the other routes' cases and the call sequences
    find the endpoint as configured, whichever cases ran before them on a worker."""
    yield from serve_endpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def schema(served):
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("route", ALL_ROUTES, ids=lambda route: route.path)
def test_every_answer_is_documented_and_no_server_error(request, schema, route, mode) -> None:
    operation = schema[route.path]["POST"]
    served = request.getfixturevalue("served_for_admin" if route.admin else "served")

    # One keep-alive session for the test's cases, as a client would send them: without it
    # each case built a session and a connection of its own (and the server a connection).
    with requests.Session() as session:

        @BOUNDED
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            case.call_and_validate(base_url=served.url, session=session, timeout=10)

        check()


def test_call_sequences_following_the_documented_links(schema) -> None:
    session = requests.Session()  # one keep-alive session for every step, as above

    # invocation -> conversion / stats with the ids the invocation answered; on the served
    # endpoint, or random names would make every sequence stop at a 404
    class Workflow(schema.as_state_machine()):
        def before_call(self, case) -> None:
            positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
            if positive and isinstance(case.body, dict) and "endpoint_name" in case.body:
                case.body["endpoint_name"] = ENDPOINT
                # The served endpoint's rewards are binary: the document says a reward is in
                # [0, 1] there (any other is a 400 naming it, tested beside the routes).
                reward = case.body.get("reward")
                if isinstance(reward, int | float) and not isinstance(reward, bool):
                    case.body["reward"] = min(max(reward, 0.0), 1.0)

        def get_call_kwargs(self, case) -> dict:
            return {"session": session}

    with session:
        Workflow.run(
            settings=settings(
                max_examples=25,
                stateful_step_count=6,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
        )
