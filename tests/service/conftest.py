"""Service tests run over the real SQLite store, a manual clock and the doubles beside this file."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from abtest.adapters.sqlite import SqliteStore
from abtest.clock import ManualClock
from abtest.service import Service, ServiceSettings
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
def service(store, log, models, clock) -> Service:
    svc = Service(
        store,
        events=log,
        models=models,
        catalog=Catalog(config()),
        clock=clock,
        settings=ServiceSettings(assignment_ttl_seconds=3600, metrics_cache_seconds=5),
        rng=random.Random(7),
    )
    svc.register(ENDPOINT)
    store.calls.clear()
    return svc
