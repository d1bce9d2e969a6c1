"""`abtest dashboard --url`: the page served locally against an API that needs auth, with
the page's routes (/stats, /history, the admin routes) forwarded, credentials added here,
and nothing else."""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from abtest.cli import main
from abtest.embedded.dashboard_proxy import DashboardProxy
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from tests.adapters.conftest import closed_port
from tests.embedded.helpers import ENDPOINT, write_config

TOKEN = "s3cret-token"
CONSTANT = {
    "Champion1": "tests.embedded.helpers:constant",
    "Challenger1": "tests.embedded.helpers:constant",
}


@pytest.fixture
def api(tmp_path):
    """An embedded server that needs its token, after a little traffic."""
    config = write_config(tmp_path, interval=3600, variants=CONSTANT)
    runtime = Runtime(config, tmp_path / "data", rng=random.Random(0))
    with EmbeddedServer(runtime, token=TOKEN) as server:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for n in range(6):
            body = {"endpoint_name": ENDPOINT, "user_id": f"u{n}", "data": "x"}
            assert httpx.post(f"{server.url}/invocation", json=body, headers=auth).is_success
        runtime.events.flush()
        yield server


def test_the_page_reads_stats_and_history_through_the_proxy(api) -> None:
    with DashboardProxy(api.url, [ENDPOINT], headers={"Authorization": f"Bearer {TOKEN}"}) as proxy:
        page = httpx.get(f"{proxy.url}/dashboard")
        assert page.status_code == 200 and ENDPOINT in page.text
        assert re.search(r'"docs": false', page.text)  # no link to a /docs it does not serve
        assert httpx.get(f"{proxy.url}/dashboard/plotly.min.js").status_code == 200
        body = {"endpoint_name": ENDPOINT}
        direct = httpx.post(
            f"{api.url}/stats", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
        assert httpx.post(f"{proxy.url}/stats", json=body).json() == direct
        history = httpx.post(f"{proxy.url}/history", json=body).json()
        assert [s["seq"] for s in history["snapshots"]] == [1]
        # The API's own answers come through as they are (a 400 naming the field) ...
        bad = httpx.post(f"{proxy.url}/history", json={**body, "limit": 0})
        assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "limit"
        # ... and nothing but the page's routes is forwarded.
        invoke = {**body, "user_id": "u9", "data": "x"}
        assert httpx.post(f"{proxy.url}/invocation", json=invoke).status_code == 404


def test_the_lifecycle_actions_go_through_it_with_its_credentials(api) -> None:
    body = {"endpoint_name": ENDPOINT, "reason": "retraining"}
    with DashboardProxy(api.url, [ENDPOINT], headers={"Authorization": f"Bearer {TOKEN}"}) as proxy:
        listed = httpx.post(f"{proxy.url}/admin/list", json={}).json()
        assert [e["endpoint_name"] for e in listed["endpoints"]] == [ENDPOINT]
        paused = httpx.post(f"{proxy.url}/admin/pause", json=body)
        assert paused.status_code == 200 and paused.json()["state"] == "paused"
        again = httpx.post(f"{proxy.url}/admin/pause", json=body)
        assert again.status_code == 409 and "is paused" in again.json()["message"]
        shown = httpx.post(f"{proxy.url}/admin/show", json={"endpoint_name": ENDPOINT}).json()
    # The API saw the proxy's token: the audit log names it (never the browser's).
    [entry] = shown["audit_log"]
    assert (entry["action"], entry["reason"]) == ("pause", "retraining")
    assert entry["actor"].startswith("token:")


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},  # a form or text POST needs no CORS preflight
        {"Content-Type": "application/json", "Origin": "http://evil.example"},
        {"Content-Type": "application/json", "Origin": "http://127.0.0.1:1"},  # another port
    ],
)
def test_requests_not_from_its_page_are_refused_not_signed(api, headers) -> None:
    # Another site open in the browser must not conclude an experiment with our credentials.
    body = b'{"endpoint_name": "%s"}' % ENDPOINT.encode()
    with DashboardProxy(api.url, [ENDPOINT], headers={"Authorization": f"Bearer {TOKEN}"}) as proxy:
        refused = httpx.post(f"{proxy.url}/admin/pause", content=body, headers=headers)
        port = proxy.url.rsplit(":", 1)[1]
        shown = [
            httpx.post(
                f"{proxy.url}/admin/show",
                content=body,
                headers={"Content-Type": "application/json", "Origin": origin},
            )
            for origin in (proxy.url, f"http://localhost:{port}")  # the page, however opened
        ]
    assert refused.status_code == 403
    assert [(s.status_code, s.json()["state"]) for s in shown] == [(200, "running")] * 2


def test_without_the_credentials_the_api_answers_401_through_it(api) -> None:
    with DashboardProxy(api.url, [ENDPOINT]) as proxy:
        assert httpx.post(f"{proxy.url}/stats", json={"endpoint_name": ENDPOINT}).status_code == 401


def test_an_api_that_does_not_answer_is_a_502_naming_it() -> None:
    upstream = f"http://127.0.0.1:{closed_port()}"
    with DashboardProxy(upstream, [ENDPOINT]) as proxy:
        answer = httpx.post(f"{proxy.url}/stats", json={"endpoint_name": ENDPOINT})
    assert answer.status_code == 502 and upstream in answer.json()["message"]


class _Refusing(BaseHTTPRequestHandler):
    """An API that answers every request 403: it names no endpoint."""

    def do_GET(self) -> None:
        self.send_error(403)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_the_command_needs_an_endpoint_where_the_api_names_none(capsys) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["dashboard", "--url", url, "--port", "0"]) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert "--endpoint: give the endpoint's name" in capsys.readouterr().err


def test_the_command_says_when_nothing_answers_at_the_url(capsys) -> None:
    # It said "--endpoint: give the endpoint's name", exit 2: no name would have helped.
    url = f"http://127.0.0.1:{closed_port()}"

    assert main(["dashboard", "--url", url, "--port", "0"]) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"abtest: nothing answers at {url}: ") and err.count("\n") == 1
    assert err.rstrip().endswith("start `abtest serve` or check --url")


def test_a_local_port_in_use_is_named(capsys) -> None:
    # It was "abtest: [Errno 98] Address already in use", naming no address.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"http://127.0.0.1:{closed_port()}"
        code = main(["dashboard", "--url", url, "--endpoint", ENDPOINT, "--port", str(port)])

    err = capsys.readouterr().err
    assert (code, err) == (
        1,
        f"abtest: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )


@pytest.mark.slow  # a process
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_command_serves_the_page_with_the_token_it_was_given(api, stop) -> None:
    command = [
        str(Path(sys.executable).parent / "abtest"),
        *("dashboard", "--url", api.url, "--port", "0", "--auth", "token", "--token", TOKEN),
    ]
    # Started as a script's background job is, with SIGINT ignored (`trap "" INT` is what a
    # shell without job control does for `cmd &`): Ctrl-C must stop it all the same.
    shell = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    process = subprocess.Popen(shell, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        local = re.search(r"at (http://127\.0\.0\.1:\d+)/dashboard", line).group(1)
        # Generous timeouts: under a loaded machine the proxy's upstream call may be slow.
        page = httpx.get(f"{local}/dashboard", timeout=30)
        # No --endpoint: the API's /admin/list named it
        assert page.status_code == 200 and f'"endpoints": ["{ENDPOINT}"]' in page.text
        stats = httpx.post(f"{local}/stats", json={"endpoint_name": ENDPOINT}, timeout=30)
        assert stats.status_code == 200 and stats.json()["endpoint_name"] == ENDPOINT
    finally:
        process.send_signal(stop)
        try:
            code = process.wait(timeout=30)
        finally:
            process.kill()  # never left running behind a failed test
    assert code == 0


@pytest.mark.parametrize("named", [False, True])
def test_without_credentials_the_command_says_which_to_give_and_does_not_start(
    api, capsys, monkeypatch: pytest.MonkeyPatch, named: bool
) -> None:
    # It started, and its page showed nothing but the API's 401s.
    def started(self: DashboardProxy) -> None:
        raise AssertionError("the dashboard started for an API that refuses its requests")

    monkeypatch.setattr(DashboardProxy, "serve_forever", started)
    argv = ["dashboard", "--url", api.url, "--port", "0"]
    argv += ["--endpoint", ENDPOINT] if named else []

    assert main(argv) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"abtest: {api.url} refused the dashboard's requests (HTTP 401); ")
    assert "give --auth token (with --token or ABTEST_TOKEN)" in err and err.count("\n") == 1
