"""The routes in-process: the shared resolver over the embedded runtime (real SQLite, real
event log, local models), milliseconds a request. Each route gets its own resolver, as each
Lambda function does, and is called like a handler module: `route.lambda_handler(event, ctx)`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from abtest.embedded.wiring import Runtime
from abtest.http.resolver import build_resolver, handle
from tests.embedded.helpers import write_config


@dataclass
class Route:
    app: APIGatewayRestResolver

    def lambda_handler(self, event: dict, context: Any) -> dict:
        return handle(self.app, event, context)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One started runtime per module: bad requests leave nothing behind to share."""
    folder = tmp_path_factory.mktemp("http")
    config = write_config(
        folder,
        variants={
            "Champion1": "tests.embedded.helpers:constant",
            "Challenger1": "tests.embedded.helpers:constant",
        },
    )
    with Runtime(config, folder / "data", rng=random.Random(0)) as started:
        yield started


@pytest.fixture(scope="module")
def api(runtime: Runtime) -> SimpleNamespace:
    return SimpleNamespace(
        **{
            name: Route(build_resolver({name: use_case}))
            for name, use_case in runtime.use_cases.items()
        }
    )
