"""The README's curl examples, run as written against the demo endpoint."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from abtest.embedded.config import load_config
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime

REPO = Path(__file__).resolve().parents[2]
README_URL = "http://127.0.0.1:8080"


def _curl_commands() -> list[str]:
    """Each `curl ...` command of the README's shell blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip().startswith("curl ")]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = load_config(REPO / "abtest" / "demo" / "reviews.toml")
    with EmbeddedServer(Runtime(config, tmp_path_factory.mktemp("curl"))) as server:
        yield server.url


def _run(command: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command.replace(README_URL, url)], capture_output=True, text=True, timeout=30
    )


def test_the_readme_curl_examples_work_as_written(demo_url: str) -> None:
    commands = _curl_commands()
    routes = [re.search(r"/(\w+) ", c).group(1) for c in commands]
    assert routes == ["invocation", "conversion", "stats", "pause"]
    answers = []
    for command in commands:
        done = _run(command, demo_url)
        assert done.returncode == 0, done.stdout + done.stderr  # --fail-with-body: 2xx only
        answers.append(json.loads(done.stdout))
    invocation, conversion, stats, paused = answers
    assert invocation["predictions"][0]["label"][0].startswith("__label__")
    assert (conversion["user_id"], conversion["duplicate"]) == ("user-1", False)
    assert stats["endpoint_name"] == "reviews-helpfulness"
    assert (paused["state"], paused["audit_log"][0]["reason"]) == ("paused", "model retraining")


def test_curl_without_the_content_type_gets_a_415_that_says_so(demo_url: str) -> None:
    stats = _curl_commands()[2]
    without = stats.replace("-H 'Content-Type: application/json'", "")
    assert without != stats
    done = _run(without, demo_url)
    assert done.returncode != 0  # curl's -d default media type is refused
    answer = json.loads(done.stdout)
    assert answer["error"] == "unsupported_media_type"
    assert "Content-Type 'application/x-www-form-urlencoded'" in answer["message"]
    assert "send application/json" in answer["message"]
