"""Each handler's environment model: a missing or bad variable fails the cold start, named."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import types

import pytest

from abtest import ids
from abtest.adapters.sagemaker import SageMakerModelEndpoint
from abtest.errors import ConfigError
from abtest.http.routes import ROUTE_NAMES
from infra.api_stack import model_timeout_seconds
from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import (
    ENDPOINT,
    ENVIRONMENT,
    FakeRuntime,
    create_endpoint,
    state_change,
)
from tests.lambdas.doubles import cold_start as fresh_import


def cold_start(name: str, monkeypatch: pytest.MonkeyPatch, **changes: str | None):
    """The function `name` (a route, metrics or register) started with the environment changed."""
    for key, value in {**ENVIRONMENT, **changes}.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    if name in ROUTE_NAMES:
        if "ROUTE" not in changes:
            monkeypatch.setenv("ROUTE", name)
        return fresh_import("lambdas.api")
    return fresh_import(f"lambdas.{name}")


def fresh_interpreter(script: str) -> str:
    """What `script` prints in a new Python process with the functions' environment: what a
    cold start imports and builds (this process has had every module loaded by other tests)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**ENVIRONMENT, "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize(
    ("handler", "variable"),
    [
        ("invocation", "DELIVERY_STREAM_NAME"),
        ("invocation", "ASSIGNMENT_TABLE"),
        ("conversion", "DEAD_LETTER_QUEUE_URL"),
        ("stats", "METRICS_TABLE"),
        ("metrics", "REJECTED_PREFIX"),
        ("register", "ENDPOINT_PREFIX"),
    ],
)
def test_a_missing_variable_fails_the_cold_start_naming_it(monkeypatch, handler, variable):
    with pytest.raises(ConfigError, match=variable) as error:
        cold_start(handler, monkeypatch, **{variable: None})

    assert f"{handler.capitalize()}Environment" in str(error.value)


@pytest.mark.parametrize("route", [None, "", "invocations"])
def test_an_api_function_must_name_its_route(monkeypatch, route):
    with pytest.raises(ConfigError, match="ROUTE"):
        cold_start("invocation", monkeypatch, ROUTE=route)


def test_an_empty_endpoint_prefix_is_refused_never_taken_as_every_endpoint(monkeypatch):
    with pytest.raises(ConfigError, match="ENDPOINT_PREFIX"):
        cold_start("register", monkeypatch, ENDPOINT_PREFIX="")


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_bad_numbers_are_refused(monkeypatch, value):
    with pytest.raises(ConfigError, match="METRICS_CACHE_SECONDS"):
        cold_start("invocation", monkeypatch, METRICS_CACHE_SECONDS=value)


def test_numbers_are_read(monkeypatch):
    module = cold_start(
        "invocation", monkeypatch, ASSIGNMENT_TTL_SECONDS="60", METRICS_CACHE_SECONDS="0.5"
    )

    assert module.use_case.assignment_ttl_seconds == 60
    assert module.use_case.endpoints.ttl_seconds == 0.5


def test_each_function_builds_only_the_ports_it_serves(monkeypatch):
    stats = cold_start("stats", monkeypatch, ASSIGNMENT_TABLE=None, DELIVERY_STREAM_NAME=None)
    invocation = cold_start("invocation", monkeypatch)
    register = cold_start("register", monkeypatch)

    built = {"env", "clients", "store"}  # each port is built on first use, and kept
    assert set(vars(stats.ports)) == built
    # (the model host: registration finishes a pending promotion of a concluded winner)
    assert set(vars(register.ports)) == built | {"catalog", "endpoints", "clock", "model_host"}
    assert set(vars(invocation.ports)) == built | {
        "endpoints",
        "models",
        "events",
        "clock",
        "telemetry",
        "rng",
    }


def test_a_cold_start_makes_no_client_and_a_request_only_those_it_calls(aws, monkeypatch):
    # GIVEN a registered endpoint and a fresh invocation function
    create_endpoint({"ab-testing:strategy": "ThompsonSampling"})
    assert aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    invocation = cold_start("invocation", monkeypatch)
    clients = invocation.ports.clients
    assert set(clients) == {"dynamodb", "firehose", "sqs", "sagemaker-runtime"}
    assert not any(client.built for client in clients.values())
    monkeypatch.setattr(invocation.use_case, "models", SageMakerModelEndpoint(client=FakeRuntime()))

    # WHEN it answers an invocation whose event Firehose takes
    status, _ = call(invocation, api_event("/invocation", {"endpoint_name": ENDPOINT, "data": "x"}))

    # THEN it made the store's and Firehose's clients, and never the dead-letter queue's
    assert status == 200
    assert {name for name, client in clients.items() if client.built} == {"dynamodb", "firehose"}


def test_snapstart_hooks_are_registered_where_the_runtime_offers_them(monkeypatch):
    registered: dict[str, list] = {"before": [], "after": []}
    runtime_hooks = types.ModuleType("snapshot_restore_py")
    runtime_hooks.register_before_snapshot = registered["before"].append
    runtime_hooks.register_after_restore = registered["after"].append
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime_hooks)

    for name in ("invocation", "metrics", "register"):
        ports = cold_start(name, monkeypatch).ports
        assert registered["before"][-1] == ports.before_snapshot
        assert registered["after"][-1] == ports.after_restore
    # An API function's snapshot also holds its route's validator and serializer.
    api = cold_start("stats", monkeypatch)
    assert api.route.build in registered["before"]


def test_a_function_builds_only_its_own_route_s_bodies_and_those_before_the_snapshot():
    # A fresh interpreter: in this one other tests have built every body already.
    script = (
        "import importlib, os\n"
        "os.environ['ROUTE'] = 'stats'\n"
        "api = importlib.import_module('lambdas.api')\n"
        "from abtest.http.routes import ALL_ROUTES\n"
        "def built():\n"
        "    bodies = {b for r in ALL_ROUTES for b in (r.request, r.response)}\n"
        "    return sorted(b.__name__ for b in bodies if b.__pydantic_complete__)\n"
        "print(built())\n"
        "api.route.build()\n"
        "print(built())\n"
    )
    out = fresh_interpreter(script)

    at_import, before_snapshot = out.split("\n")[:2]
    assert at_import == "[]"
    assert before_snapshot == "['StatsRequest', 'StatsResponse']"


def test_before_the_snapshot_clients_are_made_and_after_a_restore_remade_and_reseeded(
    monkeypatch,
):
    ports = cold_start("invocation", monkeypatch).ports
    # Made, never called: no connection is open in the snapshot (and no AWS is needed here).
    ports.before_snapshot()
    assert all(client.built for client in ports.clients.values())
    snapshot_rng, snapshot_random = ports.rng.getstate(), random.getstate()
    ids.new_id()  # the snapshot holds a block of fresh ids
    reads: list[int] = []
    kernel = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: reads.append(n) or kernel(n))

    ports.after_restore()
    ids.new_id()

    # Environments restored from one snapshot must not draw the same picks, nor share clients.
    assert ports.rng.getstate() != snapshot_rng
    assert random.getstate() != snapshot_random
    assert not any(client.built for client in ports.clients.values())
    assert reads, "a restored environment must read its own block of ids, not the snapshot's"
    assert ports.clients["dynamodb"].meta.service_model.service_name == "dynamodb"  # remade


def test_no_handler_imports_numpy_or_scipy():
    # A fresh interpreter: this test process has them loaded by other tests.
    script = (
        "import importlib, os, sys\n"
        "for route in ('invocation', 'conversion', 'stats'):\n"
        "    os.environ['ROUTE'] = route\n"
        "    sys.modules.pop('lambdas.api', None)\n"
        "    importlib.import_module('lambdas.api').ports.before_snapshot()\n"
        "for name in ('lambdas.metrics', 'lambdas.register'):\n"
        "    importlib.import_module(name).ports.before_snapshot()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy'}))\n"
    )
    out = fresh_interpreter(script)
    assert out.strip() == "[]"


# What an API function's cold start may import of the routes' modules and of the statistics:
# its own route's bodies and use case, never another's, nor the estimates, the posterior's
# quadrature or the special functions (the allocation and figures are read as aggregation
# stored them), nor the reading side of the event log.
WATCHED = (
    *(f"abtest.http.{name}_bodies" for name in ("invocation", "conversion", "stats")),
    *("abtest.http.history_bodies", "abtest.http.admin_bodies"),
    *(f"abtest.usecases.{name}" for name in ("invoke", "convert", "stats", "admin")),
    *("bandit.estimates", "bandit.posterior", "bandit.special", "abtest.event_reading"),
)


@pytest.mark.parametrize(
    ("route", "imported"),
    [
        ("invocation", ["abtest.http.invocation_bodies", "abtest.usecases.invoke"]),
        ("conversion", ["abtest.http.conversion_bodies", "abtest.usecases.convert"]),
        ("stats", ["abtest.http.stats_bodies", "abtest.usecases.stats"]),
        ("history", ["abtest.http.history_bodies"]),
        # An endpoint's view shows its variants as /stats does.
        (
            "pause",
            [
                "abtest.http.admin_bodies",
                "abtest.http.stats_bodies",
                "abtest.usecases.admin",
                "abtest.usecases.stats",
            ],
        ),
    ],
)
def test_a_function_imports_the_bodies_and_use_cases_of_its_own_route_only(route, imported):
    # A fresh interpreter per route: what its cold start compiles and runs.
    script = (
        "import os, sys\n"
        f"os.environ['ROUTE'] = {route!r}\n"
        "import lambdas.api\n"
        f"print(sorted(m for m in sys.modules if m in {WATCHED!r}))\n"
    )
    out = fresh_interpreter(script)

    assert out.strip() == str(sorted(imported))


def test_every_aws_call_is_bounded_inside_the_function_timeout(monkeypatch):
    # What the stack gives the model with the default 15 s function timeout.
    timeout = 15
    model_timeout = model_timeout_seconds(timeout)
    invocation = cold_start("invocation", monkeypatch, MODEL_TIMEOUT_SECONDS=str(model_timeout))
    metrics = cold_start("metrics", monkeypatch)

    def bounds(client) -> tuple[float, float, int]:
        config = client.meta.config
        return config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]

    store = bounds(invocation.use_case.store.client)
    firehose = bounds(invocation.use_case.events.client)
    queue = bounds(invocation.use_case.events.sqs_client)
    model = bounds(invocation.use_case.models.client)
    # One try for the model: a hung one is the documented 502, not a Lambda timeout.
    assert model == (1.0, model_timeout, 1) and model_timeout >= 5
    assert firehose == queue == (0.5, 1.0, 1)
    worst = (
        sum(store[:2]) * store[2]  # the assignment read; then the fallback
        + sum(model[:2])
        + invocation.use_case.events.deadline_seconds
        + sum(firehose[:2])  # the last Firehose try, started before the deadline
        + sum(queue[:2])
    )
    assert worst <= timeout
    s3 = metrics.s3.meta.config
    assert s3.read_timeout * s3.retries["total_max_attempts"] < 120  # the metrics function's
