"""A bearer token guards the data routes, and a non-loopback address is refused without one."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import httpx
import pytest

from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from abtest.errors import ConfigError
from tests.embedded.helpers import ABTEST, ENDPOINT, REPO, write_config

TOKEN = "s3cret-token"
STATS = {"endpoint_name": ENDPOINT}


@pytest.fixture
def guarded(tmp_path: Path):
    runtime = Runtime(write_config(tmp_path), tmp_path / "data", rng=random.Random(0))
    with EmbeddedServer(runtime, token=TOKEN) as server:
        yield server


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"]
)
def test_the_data_routes_need_the_token(guarded, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}

    for route in ("invocation", "conversion", "stats"):
        response = httpx.post(f"{guarded.url}/{route}", json=STATS, headers=headers)

        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert set(body) == {"error", "message", "details"}
        assert body["error"] == "unauthorized"


def test_the_right_token_is_served_and_health_and_docs_stay_open(guarded) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}

    assert httpx.post(f"{guarded.url}/stats", json=STATS, headers=headers).status_code == 200
    assert httpx.get(f"{guarded.url}/health").status_code == 200
    assert httpx.get(f"{guarded.url}/openapi.json").status_code == 200


def test_the_document_asks_for_the_token_on_exactly_the_routes_that_need_it(guarded) -> None:
    # GIVEN a server with a token, WHEN a client reads its OpenAPI document
    document = httpx.get(f"{guarded.url}/openapi.json").json()
    # THEN it declares one HTTP bearer scheme, as Swagger UI's "Authorize" offers it
    schemes = document["components"]["securitySchemes"]
    assert [scheme["type"] for scheme in schemes.values()] == ["http"]
    assert [scheme["scheme"] for scheme in schemes.values()] == ["bearer"]
    # AND every operation asks for it: each is a route the server answers 401 without it
    for path, operations in document["paths"].items():
        assert operations["post"]["security"] == [{name: []} for name in schemes], path
        assert httpx.post(f"{guarded.url}{path}", json={}).status_code == 401, path
    # AND the documents, the pages and /health, which no operation names, stay open
    for path in ("/health", "/openapi.json", "/docs", "/dashboard"):
        assert httpx.get(f"{guarded.url}{path}").status_code == 200, path


def test_a_server_without_a_token_asks_for_none(tmp_path: Path) -> None:
    runtime = Runtime(write_config(tmp_path), tmp_path / "data", rng=random.Random(0))
    with EmbeddedServer(runtime) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
        answered = httpx.post(f"{server.url}/stats", json=STATS).status_code

    assert "securitySchemes" not in document["components"]
    assert "security" not in document
    assert all("security" not in ops["post"] for ops in document["paths"].values())
    assert answered == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "my-host.example"])
def test_a_non_loopback_address_without_a_token_is_refused(tmp_path: Path, host: str) -> None:
    runtime = Runtime(write_config(tmp_path), tmp_path / "data")

    with pytest.raises(ConfigError, match="--token"):
        EmbeddedServer(runtime, host=host)


@pytest.mark.slow  # an `abtest serve` process
def test_abtest_serve_refuses_0_0_0_0_without_a_token_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ABTEST_TOKEN"}
    config = str(write_config(tmp_path))

    result = subprocess.run(
        [*ABTEST, "serve", "--config", config, "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--host 0.0.0.0" in result.stderr and "--token" in result.stderr


@pytest.mark.slow  # an `abtest serve` process
def test_abtest_serve_takes_the_token_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "ABTEST_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    command = [*ABTEST, "serve", "--config", str(write_config(tmp_path)), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = process.stdout.readline().split(" on ")[1].split()[0]
        anonymous = httpx.post(f"{url}/stats", json=STATS)
        bearer = {"authorization": f"Bearer {TOKEN}"}
        holder = httpx.post(f"{url}/stats", json=STATS, headers=bearer)
    finally:
        process.terminate()
        process.communicate(timeout=30)

    assert anonymous.status_code == 401
    assert holder.status_code == 200
