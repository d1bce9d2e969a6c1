"""Use-case tests over the real SQLite store, a manual clock and the doubles beside this file."""

from __future__ import annotations

import random
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from abtest.adapters.local_models import LocalModelHost
from abtest.adapters.sqlite import SqliteStore
from abtest.adapters.telemetry import CountingTelemetry
from abtest.clock import ManualClock
from abtest.usecases.aggregate import Aggregate
from abtest.usecases.convert import Convert
from abtest.usecases.endpoints import EndpointCache
from abtest.usecases.invoke import Invoke
from abtest.usecases.register import Register
from abtest.usecases.stats import Stats
from tests.service.doubles import ENDPOINT, Catalog, CountingStore, EventLog, Models, config


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path) -> Iterator[CountingStore]:
    real = SqliteStore(tmp_path / "abtest.sqlite3")
    yield CountingStore(real)
    real.close()


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture
def models() -> Models:
    return Models(["Champion1", "Challenger1"])


@pytest.fixture
def telemetry() -> CountingTelemetry:
    return CountingTelemetry()


@pytest.fixture
def ports(store, log, models, clock, telemetry) -> SimpleNamespace:
    """Every port, as the embedded runtime offers them: one shared endpoint cache."""
    return SimpleNamespace(
        store=store,
        events=log,
        models=models,
        catalog=Catalog(config()),
        clock=clock,
        telemetry=telemetry,
        rng=random.Random(7),
        assignment_ttl_seconds=3600,
        endpoints=EndpointCache(store, ttl_seconds=5),
        history=store,  # the SQLite store keeps it, in its own tables
        model_host=LocalModelHost(),  # as embedded; tests of promotion put SageMaker's here
    )


@pytest.fixture
def usecases(ports, store) -> SimpleNamespace:
    """Every use case over the same ports, the endpoint registered, the call counts reset."""
    built = SimpleNamespace(
        invoke=Invoke.from_ports(ports),
        convert=Convert.from_ports(ports),
        stats=Stats.from_ports(ports),
        registration=Register.from_ports(ports),
        aggregate=Aggregate.from_ports(ports),
    )
    built.registration.register(ENDPOINT)
    store.calls.clear()
    return built
