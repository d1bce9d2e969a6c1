"""Embedded server throughput and latency over loopback HTTP, against a bare uvicorn baseline.

    python bench/server.py [--seconds 5] [--concurrency 8]

Starts, each in its own process: a bare uvicorn app answering a constant (the floor
any ASGI server on this machine can do), and `abtest serve` with a constant model, so
the figures are what abtest adds around a model. One asyncio client process keeps
`--concurrency` requests in flight for `--seconds` per row and prints requests/s and
p50/p99 latency. Target: >= 1,000 req/s with p99 <= 20 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ENDPOINT = "bench"

BASELINE_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"12")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

CONFIG = f"""
[endpoint]
name = "{ENDPOINT}"
strategy = "ThompsonSampling"
[event_log]
buffer_interval_seconds = 1
[[variants]]
name = "A"
model = "bench_model:constant"
[[variants]]
name = "B"
model = "bench_model:constant"
"""

MODEL = "def constant(data, content_type):\n    return [1]\n"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def load(url: str, bodies, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) with `concurrency` keep-alive connections busy.

    A minimal HTTP/1.1 client on raw asyncio streams: a full client library costs more CPU
    per request than the servers measured here, and would share their 2 cores.
    """
    parsed = httpx.URL(url)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while time.perf_counter() < deadline:
                body = bodies(next(counter))
                if body is None:
                    head = f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n\r\n"
                    request = head.encode()
                else:
                    request = (
                        f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    ).encode() + body
                started = time.perf_counter()
                writer.write(request)
                status, length = await _read_head(reader)
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise RuntimeError(f"{url}: HTTP {status}")
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return int(lines[0].split()[1]), length


def invocation(user: str) -> bytes:
    return json.dumps({"endpoint_name": ENDPOINT, "user_id": user, "data": "{}"}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="abtest-bench-"))
    (work / "bench_model.py").write_text(MODEL)
    (work / "bench.toml").write_text(textwrap.dedent(CONFIG))
    env = {**os.environ, "PYTHONPATH": f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    baseline_port, abtest_port = free_port(), free_port()
    processes = [
        subprocess.Popen([sys.executable, "-c", BASELINE_APP, str(baseline_port)], env=env),
        subprocess.Popen(
            [sys.executable, "-m", "abtest.cli", "serve", "--config", str(work / "bench.toml"),
             "--port", str(abtest_port), "--data-dir", str(work / "data")],
            env=env,
            stdout=subprocess.DEVNULL,
        ),
    ]  # fmt: skip
    baseline, abtest = f"http://127.0.0.1:{baseline_port}", f"http://127.0.0.1:{abtest_port}"
    try:
        wait_ready(baseline)
        wait_ready(f"{abtest}/health")
        # Warm up: model import, per-thread resolvers, returning users' assignments.
        asyncio.run(load(f"{abtest}/invocation", lambda n: invocation(f"r{n % 200}"), 1.0, 8))
        rows = [
            ("bare uvicorn, constant", baseline, lambda n: None),
            ("abtest GET /health", f"{abtest}/health", lambda n: None),
            ("invocation, returning user", f"{abtest}/invocation",
             lambda n: invocation(f"r{n % 200}")),
            ("invocation, new user", f"{abtest}/invocation",
             lambda n: invocation(f"n{n}-{time.time_ns()}")),
        ]  # fmt: skip
        print(f"{platform.python_version()} on {os.cpu_count()} cores; ", end="")
        print(f"{args.concurrency} in flight, {args.seconds:g} s per row")
        print(f"{'':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
        for name, url, bodies in rows:
            rate, latencies = asyncio.run(load(url, bodies, args.seconds, args.concurrency))
            cuts = statistics.quantiles(latencies, n=100)
            print(f"{name:<30}{rate:>9.0f}{cuts[49]:>9.2f}{cuts[98]:>9.2f}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
