"""`abtest serve` as a real process: startup, SIGTERM, SIGKILL and restart on the same data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from abtest.embedded.workers import STOP_SECONDS
from tests.embedded.helpers import (
    ABTEST,
    ENDPOINT,
    REPO,
    counts_by_variant,
    logged_events,
    stats_counts,
    write_config,
)

# Slow: `abtest serve` processes started, killed and restarted.
pytestmark = pytest.mark.slow

PAYLOAD = '{"instances": ["battery lasted months"], "configuration": {"k": 1}}'


class Serving:
    """`abtest serve` as a user starts it (in `cwd`, if given); `wait=False` returns before
    its URL line is read (then `read_url`)."""

    def __init__(
        self, config: Path, data_dir: Path, *, wait: bool = True, cwd: Path | None = None
    ) -> None:
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.process = subprocess.Popen(
            [*ABTEST, "serve", "--config", str(config), "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.url = self.read_url(timeout=60) if wait else ""
        self.http = httpx.Client(timeout=30)

    def read_url(self, timeout: float) -> str:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()))
        reader.start()
        reader.join(timeout)
        if not line or " on http://" not in line[0]:
            self.process.kill()
            raise AssertionError(f"no URL printed: {line} {self.process.stderr.read()}")
        return line[0].split(" on ")[1].split()[0]

    def invoke(self, user: str) -> dict:
        body = {"endpoint_name": ENDPOINT, "user_id": user, "data": PAYLOAD}
        response = self.http.post(f"{self.url}/invocation", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def convert(self, invocation: dict) -> None:
        assert self.http.post(f"{self.url}/conversion", json=invocation).status_code == 200

    def stats(self) -> dict:
        return self.http.post(f"{self.url}/stats", json={"endpoint_name": ENDPOINT}).json()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.http.close()
        self.process.send_signal(sig)
        # With --workers the owner waits up to STOP_SECONDS for them, then closes its own
        # runtime: a loaded machine's stop took over 30 s twice.
        out, _ = self.process.communicate(timeout=STOP_SECONDS + 30)
        return self.process.returncode, out


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[list[Serving]]:
    started: list[Serving] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def start(started: list[Serving], config: Path, data_dir: Path) -> Serving:
    server = Serving(config, data_dir)
    started.append(server)
    return server


def traffic(server: Serving, users: range) -> None:
    for n in users:
        response = server.invoke(f"user-{n}")
        if n % 2 == 0:
            server.convert(response)


def test_sigterm_loses_nothing_and_a_restart_keeps_the_counts(tmp_path: Path, serving) -> None:
    # GIVEN a server whose buffer would not seal on its own for an hour
    config = write_config(tmp_path, interval=3600)
    data = tmp_path / "data"
    first = start(serving, config, data)
    traffic(first, range(30))
    # WHEN it is sent SIGTERM
    code, out = first.stop(signal.SIGTERM)
    # THEN it exits cleanly, having sealed the buffer
    assert code == 0
    assert "sealed and aggregated" in out
    assert not (data / "events" / "buffer.open").exists()
    logged = counts_by_variant(logged_events(data))
    assert sum(n for n, _ in logged.values()) == 30
    assert sum(c for _, c in logged.values()) == 15
    # AND a restart on the same data dir serves the same counts, and keeps counting
    second = start(serving, config, data)
    assert stats_counts(second.stats()) == logged
    traffic(second, range(30, 40))
    assert second.stop(signal.SIGINT)[0] == 0
    third = start(serving, config, data)
    assert stats_counts(third.stats()) == counts_by_variant(logged_events(data))
    assert sum(n for n, _ in stats_counts(third.stats()).values()) == 40


def test_a_killed_server_loses_no_logged_event_and_counts_each_once(
    tmp_path: Path, serving
) -> None:
    # GIVEN a server that has logged 20 invocations into its open buffer
    config = write_config(tmp_path, interval=3600)
    data = tmp_path / "data"
    first = start(serving, config, data)
    traffic(first, range(20))
    # WHEN it is killed without any chance to clean up
    first.stop(signal.SIGKILL)
    assert (data / "events" / "buffer.open").exists()
    # THEN the next start seals the leftover buffer and counts it
    second = start(serving, config, data)
    counted = stats_counts(second.stats())
    assert sum(n for n, _ in counted.values()) == 20
    assert counted == counts_by_variant(logged_events(data))
    # AND starting again re-aggregates every file without counting anything twice
    assert second.stop()[0] == 0
    third = start(serving, config, data)
    assert stats_counts(third.stats()) == counted


def test_a_bad_config_fails_at_start_naming_file_key_and_reason(tmp_path: Path) -> None:
    config = write_config(tmp_path, strategy="Greedy")
    result = subprocess.run(
        [
            *ABTEST,
            "serve",
            "--config",
            str(config),
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "endpoint.strategy" in result.stderr
    assert "unknown strategy 'Greedy'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_reported(tmp_path: Path, serving) -> None:
    config = write_config(tmp_path)
    first = start(serving, config, tmp_path / "one")
    port = first.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [
            *ABTEST,
            "serve",
            "--config",
            str(config),
            "--port",
            port,
            "--data-dir",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
