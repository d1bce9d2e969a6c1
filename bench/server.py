"""Embedded server throughput and latency over loopback HTTP, against a bare ASGI app.

    python bench/server.py [--seconds 5] [--connections 8,64] [--load wrk|python]
        [--models inline|threads] [--serve-args "--workers 2"] [--base REV | --before OLD_TREE]

Starts, each in its own process: a bare uvicorn app answering a constant JSON (the floor
any ASGI server on this machine can do), and `abtest serve` with a constant model, so
the figures are what abtest adds around a model. The model is declared `inline` (called
on the event loop, as a fast callable may be) unless `--models threads`. Each row drives
one of them with the same invocation bodies, for returning users (200 of them, assigned
in a warm-up) and new users (a fresh user id per request), at each connection count.

`--load wrk` (the default) uses Debian's `wrk`, a C load generator (`apt-get install -y
wrk`; `make bench` installs it when missing), so the client costs little of the 2 cores;
`--load python` uses a minimal asyncio client instead. Targets: returning users at
>= 0.6x the bare app's requests/s at 8 and 64 connections, p99 <= 10 ms at 8, no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
from trees import checkout  # bench/trees.py: the script's own folder is on the path

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
inline = INLINE
[[variants]]
name = "B"
model = "bench_model:constant"
inline = INLINE
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


# wrk runs this per thread: returning users cycle through RETURNING_USERS ids, new users
# get an id no one had (the run's stamp, the thread, a counter). done() prints one JSON line.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter, thread_id = 0, 0
local threads = {}
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_id = wrk.thread:get("thread_id") or 0
end
function request()
  counter = counter + 1
  local user
  if USERS == "returning" then
    user = "r" .. (counter % RETURNING_USERS)
  else
    user = "n" .. STAMP .. "-" .. thread_id .. "-" .. counter
  end
  local body = '{"endpoint_name": "ENDPOINT", "user_id": "' .. user .. '", "data": "{}"}'
  return wrk.format(nil, nil, nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "errors": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, e.connect + e.read + e.write + e.timeout, e.status))
end
"""
RETURNING_USERS = 200


def wrk_row(url: str, users: str, seconds: float, connections: int, folder: Path) -> dict:
    """One wrk run: requests/s, p50 and p99 in ms, socket errors and non-2xx answers."""
    script = folder / f"{users}.lua"
    text = WRK_SCRIPT.replace("USERS ==", f'"{users}" ==').replace("ENDPOINT", ENDPOINT)
    text = text.replace("RETURNING_USERS", str(RETURNING_USERS))
    script.write_text(text.replace("STAMP", f'"{time.time_ns()}"'))
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
               str(script), url]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    row["rate"] = row["requests"] / row["seconds"]
    return row


def python_row(url: str, users: str, seconds: float, connections: int) -> dict:
    stamp = time.time_ns()
    if users == "returning":
        bodies = lambda n: invocation(f"r{n % RETURNING_USERS}")  # noqa: E731
    else:
        bodies = lambda n: invocation(f"n{stamp}-{n}")  # noqa: E731
    rate, latencies = asyncio.run(load(url, bodies, seconds, connections))
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "rate": rate,
        "requests": len(latencies),
        "p50_ms": cuts[49],
        "p99_ms": cuts[98],
        "errors": 0,
        "non_2xx": 0,
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children alive now (`--workers`).

    Unlike requests/s, this hardly moves when other work shares the cores: each row's
    CPU per request is what the server spends on one, whatever else runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def knows_inline(tree: Path) -> bool:
    """Whether the tree's config takes a variant's `inline` key (it came in one version)."""
    return any('"inline"' in path.read_text() for path in (tree / "abtest").rglob("config*.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", default="8,64", help="comma-separated counts")
    parser.add_argument("--load", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--serve-args", default="", help="extra `abtest serve` arguments")
    parser.add_argument(
        "--models",
        choices=("inline", "threads"),
        default="inline",
        help="the constant model declared `inline` (called on the event loop) or not "
        "(called on a model thread, with its timeout)",
    )
    other = parser.add_mutually_exclusive_group()
    other.add_argument(
        "--base",
        help="a commit of this repository, served too (as the other benches' --base): its "
        "rows beside these in the same run",
    )
    other.add_argument(
        "--before",
        type=Path,
        help="a source tree of another version (its abtest/ and bandit/), served the same way",
    )
    args = parser.parse_args()
    if args.load == "wrk" and shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (or --load python)")
    with checkout(args.base) as base_tree:
        measure(args, args.before or base_tree, f"@{args.base}" if args.base else "before")


def measure(args: argparse.Namespace, before: Path | None, before_label: str) -> None:
    """Serve this checkout (and `before`, if given) beside the bare app, and print the rows."""
    connection_counts = [int(n) for n in args.connections.split(",")]

    work = Path(tempfile.mkdtemp(prefix="abtest-bench-"))
    (work / "bench_model.py").write_text(MODEL)
    inline = "true" if args.models == "inline" else "false"
    (work / "bench.toml").write_text(textwrap.dedent(CONFIG).replace("INLINE", inline))
    # A version before `inline` existed refuses the key (its models run on threads anyway);
    # one that knows it gets the same config, so the rows compare the same model path.
    before_config = textwrap.dedent(CONFIG).replace("inline = INLINE\n", "")
    if before and knows_inline(before):
        before_config = (work / "bench.toml").read_text()
    (work / "before.toml").write_text(before_config)
    env = {**os.environ, "PYTHONPATH": f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    baseline_port = free_port()
    processes = [
        subprocess.Popen([sys.executable, "-c", BASELINE_APP, str(baseline_port)], env=env)
    ]
    baseline = f"http://127.0.0.1:{baseline_port}"

    def serve(label: str, tree: Path | None, extra: list[str]) -> tuple[str, str, int]:
        port = free_port()
        path = f"{tree}{os.pathsep}{env['PYTHONPATH']}" if tree else env["PYTHONPATH"]
        config = work / ("before.toml" if tree else "bench.toml")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "abtest.cli", "serve", "--config", str(config),
                 "--port", str(port), "--data-dir", str(work / f"data-{port}"), *extra],
                env={**env, "PYTHONPATH": path},
                cwd=work,  # `-m` puts the working directory first: not this checkout's abtest/
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        return label, f"http://127.0.0.1:{port}", processes[-1].pid

    servers = [serve("abtest", None, args.serve_args.split())]
    if before:
        servers.append(serve(before_label, before.resolve(), []))

    def row(url: str, users: str, connections: int, seconds: float, pid: int = 0) -> dict:
        began = cpu_seconds(pid) if pid else 0.0
        if args.load == "wrk":
            result = wrk_row(url, users, seconds, connections, work)
        else:
            result = python_row(url, users, seconds, connections)
        used = cpu_seconds(pid) - began if pid else 0.0
        result["cpu_us"] = used / max(result["requests"], 1) * 1e6
        return result

    try:
        wait_ready(baseline)
        for _, url, _ in servers:
            wait_ready(f"{url}/health")
            # Warm up: model import, returning users' assignments, the server's threads.
            row(f"{url}/invocation", "returning", 8, 2.0)
        print(f"{platform.python_version()} on {os.cpu_count()} cores; load: {args.load}; ", end="")
        print(f"{args.seconds:g} s per row; load average {os.getloadavg()[0]:.1f}")
        print(
            "| connections | row | req/s | p50 ms | p99 ms | errors | non-2xx | vs bare "
            "| server CPU us/request | bare's / this |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        bare_pid = processes[0].pid
        for connections in connection_counts:
            bare = row(baseline + "/invocation", "returning", connections, args.seconds, bare_pid)
            rows = [("bare uvicorn, constant JSON", bare)]
            for label, url, pid in servers:
                for users in ("returning", "new"):
                    result = row(f"{url}/invocation", users, connections, args.seconds, pid)
                    rows.append((f"{label}: invocation, {users} user", result))
            for name, r in rows:
                print(
                    f"| {connections} | {name} | {r['rate']:,.0f} | {r['p50_ms']:.2f} | "
                    f"{r['p99_ms']:.2f} | {r['errors']} | {r['non_2xx']} | "
                    f"{r['rate'] / bare['rate']:.2f}x | {r['cpu_us']:,.0f} | "
                    f"{bare['cpu_us'] / r['cpu_us']:.2f}x |"
                )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
