"""`abtest serve --workers 2`: several processes on one data dir count exactly once.

The process tests run the single-process server's own SIGTERM and SIGKILL tests again
with ABTEST_WORKERS=2 (their clients cannot tell the difference), and kill one worker
alone under load.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from abtest.adapters.eventlog import LocalEventLog
from tests.embedded import test_crash_consistency, test_serve_process
from tests.embedded.helpers import ENDPOINT, counts_by_variant, logged_events, write_config
from tests.embedded.test_serve_process import PAYLOAD, Serving

serving = test_serve_process.serving  # the fixture, here too
MODELS = {
    "Champion1": "tests.embedded.helpers:constant",
    "Challenger1": "tests.embedded.helpers:echo",
}


# A model module whose import holds each worker of `abtest serve --workers` (not the parent,
# which loads the models too) until `gate-open` exists beside it; its model answers with
# the serving process's id, so a test sees which worker answered.
GATED_MODELS = """
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
if "--worker" in sys.argv:
    (HERE / f"worker-{sys.argv[sys.argv.index('--worker') + 1]}-waiting").touch()
    while not (HERE / "gate-open").exists():
        time.sleep(0.01)


def pid(data, content_type):
    return {"pid": os.getpid()}
"""


def event(user: int) -> dict:
    return {"type": "invocation", "endpoint_name": ENDPOINT, "user_id": f"u{user}"}


def test_workers_log_to_their_own_buffers_and_the_owner_recovers_them_all(tmp_path: Path):
    # GIVEN two workers' buffers and the owner's, left by a crash
    handed: list[str] = []
    names = ["buffer-0.open", "buffer-1.open", "buffer.open"]
    for user, name in enumerate(names):
        (tmp_path / name).write_text(json.dumps(event(user)) + "\n")

    # WHEN a restarted worker starts, THEN it seals and hands over its own buffer only
    worker = LocalEventLog(tmp_path, on_seal=handed.append, worker=1)
    worker.start()
    worker.close()
    assert len(handed) == 1
    assert sorted(p.name for p in tmp_path.glob("buffer*.open")) == names[:1] + names[2:]

    # WHEN the owner starts, THEN it seals every buffer left and hands each over
    owner = LocalEventLog(tmp_path, on_seal=handed.append)
    owner.start()
    owner.close()
    assert list(tmp_path.glob("buffer*.open")) == []
    assert len(handed) == 1 + 2  # the two buffers still left
    users = sorted(
        json.loads(line)["user_id"]
        for path in (tmp_path / "applied").glob("*.jsonl")
        for line in path.read_text().splitlines()
    )
    assert users == ["u0", "u1", "u2"]


def test_a_worker_does_not_take_the_data_dir_its_owner_holds(tmp_path: Path):
    owner = LocalEventLog(tmp_path)
    owner.start()
    try:
        worker = LocalEventLog(tmp_path, worker=0)
        worker.start()  # no ConfigError: the owner started it
        worker.put([event(1)])
        worker.close()
        assert (tmp_path / ".lock").exists()
    finally:
        owner.close()


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setenv("ABTEST_WORKERS", "2")


def worker_pids(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.slow
def test_the_url_is_printed_once_every_worker_answers(tmp_path: Path, serving, two_workers):
    # GIVEN `abtest serve` whose two workers are held at their start
    (tmp_path / "gated_models.py").write_text(GATED_MODELS)
    pid_models = {"Champion1": "gated_models:pid", "Challenger1": "gated_models:pid"}
    config = write_config(tmp_path, interval=3600, variants=pid_models)
    server = Serving(config, tmp_path / "data", wait=False)
    serving.append(server)
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"worker-{n}-waiting").exists() for n in range(2)):
        assert server.process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)

    # THEN it prints nothing while no worker can answer (a script would send at once)
    assert select.select([server.process.stdout], [], [], 0)[0] == []

    # WHEN the workers may go on, THEN the URL is printed, and each worker answers: while
    # one is stopped, the other takes a new connection
    (tmp_path / "gate-open").touch()
    server.url = server.read_url(timeout=60)
    workers = worker_pids(server.process.pid)
    assert len(workers) == 2
    answered = []
    for stopped in workers:
        os.kill(stopped, signal.SIGSTOP)
        try:
            body = {"endpoint_name": ENDPOINT, "user_id": f"u{stopped}", "data": PAYLOAD}
            answer = httpx.post(f"{server.url}/invocation", json=body, timeout=30)
            answered.append(answer.json()["predictions"]["pid"])
        finally:
            os.kill(stopped, signal.SIGCONT)
    assert answered == workers[::-1]
    assert server.stop(signal.SIGTERM)[0] == 0


@pytest.mark.slow
def test_workers_run_the_owners_abtest_whatever_folder_it_is_started_in(
    tmp_path: Path, serving, two_workers
):
    # GIVEN a working directory holding another `abtest` package, which `python -m` would
    # put first on a worker's path
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "abtest").mkdir(parents=True)
    (elsewhere / "abtest" / "__init__.py").write_text("raise SystemExit(4)\n")
    config = write_config(tmp_path, interval=3600, variants=MODELS)
    # WHEN `abtest serve --workers 2` starts there, THEN its workers serve
    server = Serving(config, tmp_path / "data", cwd=elsewhere)
    serving.append(server)
    assert server.invoke("u1")["predictions"]
    assert server.stop(signal.SIGTERM)[0] == 0


@pytest.mark.slow
def test_a_worker_that_ends_before_it_serves_stops_the_start(tmp_path: Path, serving, two_workers):
    # GIVEN models that import in the owner but end each worker's start
    (tmp_path / "no_worker_models.py").write_text(
        "import sys\n\nif '--worker' in sys.argv:\n    raise SystemExit(3)\n\n\n"
        "def constant(data, content_type):\n    return [1]\n"
    )
    models = {"Champion1": "no_worker_models:constant", "Challenger1": "no_worker_models:constant"}
    config = write_config(tmp_path, variants=models)
    # WHEN `abtest serve --workers 2` starts, THEN it prints no URL and exits 1 saying why
    server = Serving(config, tmp_path / "data", wait=False)
    serving.append(server)
    server.http.close()
    out, err = server.process.communicate(timeout=60)
    assert server.process.returncode == 1
    assert " on http://" not in out
    assert re.search(r"abtest: worker [01] exited with 3 before it served", err), err


@pytest.mark.slow
def test_sigterm_with_two_workers_loses_nothing(tmp_path: Path, serving, two_workers) -> None:
    test_serve_process.test_sigterm_loses_nothing_and_a_restart_keeps_the_counts(tmp_path, serving)


@pytest.mark.slow
def test_sigkill_with_two_workers_loses_nothing_and_counts_once(tmp_path: Path, two_workers):
    test_crash_consistency.test_sigkill_under_load_loses_no_acknowledged_request_and_counts_none_twice(
        tmp_path
    )


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_events_are_counted_once(tmp_path, two_workers):
    # GIVEN two workers under load from four clients
    config = write_config(tmp_path, interval=0.3, variants=MODELS)
    data = tmp_path / "data"
    server = Serving(config, data)
    acked: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        user = 0
        while not stop.is_set():
            user += 1
            try:
                acked.append(server.invoke(f"c{n}-{user}")["inference_id"])
            except Exception:  # the killed worker's connection: not acknowledged
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    before = worker_pids(server.process.pid)
    assert len(before) == 2

    # WHEN one worker is killed outright, and the load goes on
    os.kill(before[0], signal.SIGKILL)
    time.sleep(2.0)
    after = worker_pids(server.process.pid)
    stop.set()
    for thread in threads:
        thread.join()
    code, _ = server.stop(signal.SIGTERM)

    # THEN another took its place, and every acknowledged invocation is logged and counted once
    assert code == 0
    assert len(after) == 2 and before[0] not in after
    events = logged_events(data)
    logged = [e["inference_id"] for e in events if e["type"] == "invocation"]
    assert set(acked) <= set(logged) and len(logged) == len(set(logged))
    final = Serving(config, data)
    try:
        counted = sum(m["invocation_count"] for m in final.stats()["variant_metrics"])
    finally:
        final.stop(signal.SIGTERM)
    assert counted == len(logged) == sum(n for n, _ in counts_by_variant(events).values())


def test_a_variant_added_through_one_process_is_served_by_another(tmp_path: Path) -> None:
    # GIVEN the owner and a worker on one data dir, both started before the add
    from abtest.embedded.wiring import Runtime
    from abtest.lifecycle import Action
    from abtest.usecases.admin import LifecycleChange
    from abtest.usecases.invoke import Invocation

    config, data = write_config(tmp_path, variants=MODELS), tmp_path / "data"
    with Runtime(config, data) as owner, Runtime(config, data, worker=0) as worker:
        # (the worker read the endpoint as it started: its fallback has a record to serve by)
        assert worker.endpoints.last_known(ENDPOINT) is not None
        # WHEN the owner takes an add-variant, loading the model in its own process only
        added = LifecycleChange(
            ENDPOINT, Action.ADD_VARIANT, variant="Challenger2", model=MODELS["Champion1"]
        )
        owner.use_cases["add-variant"](added)
        assert "Challenger2" not in worker.models[ENDPOINT].variant_names

        # THEN the worker's new users reach it: its model is found in the store
        served = [
            worker.use_cases["invocation"](
                Invocation(endpoint_name=ENDPOINT, user_id=f"u{n}", data="x")
            )
            for n in range(60)
        ]
        # P(none of 60 new users gets its 1/3 warm-up share) = (2/3)^60 < 1e-10
        answered = [s.predictions for s in served if s.target_variant == "Challenger2"]
        assert answered and all(p == [1] for p in answered)
        assert "Challenger2" in worker.models[ENDPOINT].variant_names
