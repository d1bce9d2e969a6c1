"""Fixtures shared by every test package: AWS credentials for tests and the fake AWS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws
from moto.core.config import DefaultConfig, default_user_config

from tests.api_gateway import REGION
from tests.http_clients import share_tls_contexts
from tests.moto_serializer import resolve_member_keys_once
from tests.moto_transactions import copy_each_table_once


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials and region, so that no client can find real ones."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


# moto's defaults, but boto3's default session outlives each mock: a new session parses
# every service's model again (JSON files of up to 1 MB), about 0.1 s per boto3.client(),
# which was most of a moto test's setup. The data is still reset per mock.
MOTO_CONFIG: DefaultConfig = {
    "core": {**default_user_config["core"], "reset_boto3_session": False},
}


@pytest.fixture
def fake_aws(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AWS in-process (moto), fresh and empty for each test: every botocore client,
    whenever it was built, talks to it and never to the network."""
    copy_each_table_once(monkeypatch)
    resolve_member_keys_once(monkeypatch)
    with mock_aws(config=MOTO_CONFIG):
        yield


@pytest.fixture(scope="session", autouse=True)
def _one_tls_context_for_httpx() -> Iterator[None]:
    """Every test's httpx clients share a TLS context (`tests/http_clients.py`)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        share_tls_contexts(monkeypatch)
        yield


# A slow test's cost when its marker does not say (`@pytest.mark.slow(seconds=30)`).
SLOW_SECONDS = 3


def expected_seconds(item: pytest.Item) -> float:
    """What the test is expected to take on a quiet 2-core machine: 0 unless marked slow."""
    slow = item.get_closest_marker("slow")
    return 0 if slow is None else slow.kwargs.get("seconds", SLOW_SECONDS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (stable: tests of one cost keep their order).

    With `make test`'s small xdist chunks, both workers start on the long tests and the
    many quick ones fill in at the end, instead of one worker running a long test alone
    while the other has finished (longest-first keeps that tail shorter than any test).
    """
    items.sort(key=expected_seconds, reverse=True)
