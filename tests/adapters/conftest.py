"""Fixtures running the Store contract suite over every adapter.

`store_kit` is parametrized over SQLite (a real file under tmp_path) and
DynamoDB (moto, in-process, no network). Each kit also knows how to count the
raw assignment items behind the store, so tests can check that a race left
exactly one record, not just that the answers agree.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config
from moto.core.botocore_stubber import BotocoreStubber

from abtest.adapters.dynamodb import DynamoDBStore, create_tables
from abtest.adapters.sqlite import SqliteStore
from abtest.ports import Store

ASSIGNMENT_TABLE = "abtest-assignment"
METRICS_TABLE = "abtest-metrics"


@dataclass
class StoreKit:
    store: Store
    # Raw item count for one (endpoint, user): assignments only, conversion markers excluded.
    stored_assignments: Callable[[str, str], int]


@pytest.fixture(scope="session")
def _shared_client():
    # Building a boto3 client costs ~0.2 s; moto intercepts any client while a mock is active.
    return boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def dynamodb_client(fake_aws: None, _shared_client, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A client on fresh, empty moto tables."""
    # DynamoDB executes each request atomically; moto does not (a transaction
    # deep-copies and may roll back whole tables). Serialize requests inside
    # moto so that the races under test are the adapter's, between requests.
    serve = BotocoreStubber.__call__
    lock = threading.Lock()

    def atomic(self, *args, **kwargs):
        with lock:
            return serve(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", atomic)
    create_tables(_shared_client, ASSIGNMENT_TABLE, METRICS_TABLE)
    return _shared_client


@pytest.fixture
def on_call(dynamodb_client) -> Iterator[Callable[[str, Callable], None]]:
    """Hook a handler on the client's calls (`before-call.dynamodb.<Operation>`) for one test.

    The client is shared by the session, so the handlers are removed afterwards.
    """
    hooked: list[tuple[str, Callable]] = []

    def hook(operation: str, handler: Callable) -> None:
        event = f"before-call.dynamodb.{operation}"
        dynamodb_client.meta.events.register(event, handler)
        hooked.append((event, handler))

    yield hook
    for event, handler in hooked:
        dynamodb_client.meta.events.unregister(event, handler)


@pytest.fixture
def dynamodb_store(dynamodb_client) -> DynamoDBStore:
    return DynamoDBStore(ASSIGNMENT_TABLE, METRICS_TABLE, client=dynamodb_client)


def _sqlite_kit(path) -> tuple[StoreKit, Callable[[], None]]:
    store = SqliteStore(path)

    def stored_assignments(endpoint_name: str, user_id: str) -> int:
        with sqlite3.connect(path) as db:
            query = "SELECT count(*) FROM assignments WHERE endpoint_name = ? AND user_id = ?"
            return db.execute(query, (endpoint_name, user_id)).fetchone()[0]

    return StoreKit(store, stored_assignments), store.close


def _dynamodb_kit(client) -> StoreKit:
    def stored_assignments(endpoint_name: str, user_id: str) -> int:
        items = client.query(
            TableName=ASSIGNMENT_TABLE,
            KeyConditionExpression="user_id = :u AND begins_with(endpoint_name, :e)",
            ExpressionAttributeValues={":u": {"S": user_id}, ":e": {"S": endpoint_name}},
            ConsistentRead=True,
        )["Items"]
        return sum(item["endpoint_name"]["S"] == endpoint_name for item in items)

    return StoreKit(
        DynamoDBStore(ASSIGNMENT_TABLE, METRICS_TABLE, client=client), stored_assignments
    )


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_kit(request: pytest.FixtureRequest, tmp_path) -> Iterator[StoreKit]:
    if request.param == "sqlite":
        kit, close = _sqlite_kit(tmp_path / "abtest.db")
        yield kit
        close()
    else:
        yield _dynamodb_kit(request.getfixturevalue("dynamodb_client"))


@pytest.fixture
def store(store_kit: StoreKit) -> Store:
    return store_kit.store


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "dynamodb"])
def unreachable_store(request: pytest.FixtureRequest, tmp_path) -> Store:
    """A store whose backend has gone away after it was opened."""
    if request.param == "sqlite":
        folder = tmp_path / "volume"
        folder.mkdir()
        store = SqliteStore(folder / "abtest.db")
        store.close()
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()  # like an unmounted volume: the next connection cannot open the file
        return store
    request.getfixturevalue("aws_credentials")
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        config=Config(connect_timeout=0.2, read_timeout=0.2, retries={"total_max_attempts": 1}),
    )
    return DynamoDBStore(ASSIGNMENT_TABLE, METRICS_TABLE, client=client)


def hold_transaction(store: SqliteStore) -> tuple[threading.Thread, threading.Event]:
    """Another thread of this process inside a write transaction, until the event is set."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._transaction():
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(30)
    return holder, release
