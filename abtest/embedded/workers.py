"""`abtest serve --workers N`: N processes answering on one socket, over one data dir.

One process serves requests on one core at a time (the GIL); these use more. The parent
binds the socket, owns the data dir (its lock), registers the endpoints and recovers the
event log (every buffer a process left, every file still waiting), and only then starts
the workers, each a fresh interpreter accepting on the inherited socket. Its URL line is
printed once every worker has said on a pipe that it accepts: a client reading it may
send at once. What keeps counts exact across them:

- the store is one SQLite file in WAL mode, every write a `BEGIN IMMEDIATE` transaction,
  so first assignments stay conditional and increments atomic across processes;
- each worker appends to its own buffer (`events/buffer-<n>.open`, unbuffered, so a
  crash loses no acknowledged event) and aggregates only the files it seals; aggregation
  is idempotent per file, so a file counted just before a crash counts once at restart.

A worker that dies is started again (it seals what its buffer held); a file it left
half-aggregated waits in `events/sealed/` until the parent, once every worker has stopped,
counts what they left (or, after a crash of the parent, until the next start). The
workers die with the parent, even by SIGKILL, so a restart finds the port and the data
dir free. Each worker keeps its own endpoint cache (a record another worker changed is
seen within `METRICS_CACHE_SECONDS`) and its own `/health` counts.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from abtest.embedded.wiring import Runtime

logger = logging.getLogger("abtest")

# Linux's prctl(PR_SET_PDEATHSIG): the kernel signals the worker when its parent dies.
_PR_SET_PDEATHSIG = 1
# How long a worker may take to seal and aggregate its buffer once asked to stop.
STOP_SECONDS = 30.0
# The folder holding the `abtest` package this process runs: first on each worker's path.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerStartError(ChildProcessError):
    """A worker ended before it ever accepted: `abtest serve` stops rather than announce a
    URL nobody answers (a worker that dies later is started again)."""


def serve_workers(
    runtime: Runtime,
    sock: socket.socket,
    workers: int,
    token: str | None,
    out: Callable,
    on_ready: Callable[[], None],
) -> None:
    """Run `workers` worker processes on `sock` until SIGINT/SIGTERM, then stop them cleanly.

    `runtime` is started (it owns the data dir) and serves no request itself. `on_ready`
    is called once every worker has told (on a pipe) that it accepts connections: before,
    the listening socket only queued them.
    """
    # The owner's own import path: its package's folder first, then the working directory
    # only if the owner has it (`python -m abtest.cli`), then PYTHONPATH. Not `python -m`'s
    # working directory first: started from a folder holding another `abtest`, a worker
    # ran that code.
    here = os.getcwd()
    paths = [_PACKAGE_ROOT, *([here] if here in sys.path or "" in sys.path else [])]
    paths += filter(None, [os.environ.get("PYTHONPATH")])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    if token is not None:
        env["ABTEST_TOKEN"] = token  # not on the command line, where `ps` would show it
    else:
        env.pop("ABTEST_TOKEN", None)
    ready_from, ready_to = os.pipe()

    def spawn(n: int) -> subprocess.Popen:
        command = [
            *(sys.executable, "-P", "-m", "abtest.embedded.workers", "--worker", str(n)),
            *("--config", str(runtime.config.path), "--data-dir", str(runtime.data_dir)),
            *("--fd", str(sock.fileno()), "--ready-fd", str(ready_to)),
            *("--parent", str(os.getpid())),
        ]
        # A session of its own: Ctrl-C reaches the parent, which stops each worker once.
        return subprocess.Popen(
            command, pass_fds=(sock.fileno(), ready_to), env=env, start_new_session=True
        )

    running: dict[int, subprocess.Popen] = {}
    starting = set(range(workers))  # not yet accepting
    told = b""

    def hear(wait: float) -> None:
        """Take the workers' ready lines off the pipe; announce once none is starting."""
        nonlocal told
        if not select.select([ready_from], [], [], wait)[0]:
            return
        was_starting = bool(starting)
        told += os.read(ready_from, 4096)
        *lines, told = told.split(b"\n")
        starting.difference_update(int(line) for line in lines)
        if was_starting and not starting:
            on_ready()
            out(f"abtest: {workers} worker processes")

    try:
        for n in range(workers):
            running[n] = spawn(n)
        while True:
            hear(0.2)
            for n, process in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                hear(0)  # it may have said it was ready just before it ended
                if n in starting:
                    raise WorkerStartError(f"worker {n} exited with {code} before it served")
                logger.warning("worker %d exited with %s; starting it again", n, code)
                running[n] = spawn(n)
    finally:
        for process in running.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()  # its buffer waits for the next start: nothing is lost
                process.wait()
        os.close(ready_from)
        os.close(ready_to)


def _tell_ready(fd: int, worker: int) -> None:
    """One line on the parent's pipe (a write under PIPE_BUF arrives whole)."""
    with contextlib.suppress(OSError):  # the parent is gone: this worker goes too
        os.write(fd, f"{worker}\n".encode())
    os.close(fd)


def _die_with(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above: nobody would stop us
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    """One worker: `python -m abtest.embedded.workers` (started by `serve_workers` only)."""
    from abtest.embedded.server import AbtestApp, settle_serving_process, uvicorn_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with(args.parent)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=args.fd)
    runtime = Runtime(args.config, args.data_dir, worker=args.worker)
    token: Any = os.environ.get("ABTEST_TOKEN") or None
    # uvicorn stops gracefully on SIGTERM, then re-raises it: end like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        runtime.start()
        settle_serving_process()
        with contextlib.suppress(KeyboardInterrupt):
            ready = functools.partial(_tell_ready, args.ready_fd, args.worker)
            uvicorn_server(AbtestApp(runtime, token), on_started=ready).run(sockets=[sock])
    finally:
        runtime.close()  # a no-op after the lifespan shutdown closed it


if __name__ == "__main__":
    main()
