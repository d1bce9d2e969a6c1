"""The local Firehose: sealing by size and interval, crash recovery, idempotent aggregation."""

from __future__ import annotations

import json
import os
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from abtest import aggregation
from abtest.adapters import eventlog
from abtest.adapters.eventlog import BUFFER_NAME, LocalEventLog
from abtest.adapters.sqlite import SqliteStore
from abtest.clock import ManualClock
from abtest.errors import ConfigError, StoreUnavailableError
from abtest.events import split_lines
from abtest.records import EndpointConfig, VariantConfig

ENDPOINT = "reviews-helpfulness"


def invocation(variant: str, user: int) -> dict:
    return {
        "type": "invocation",
        "timestamp": "2026-01-01T00:00:00.000+00:00",
        "endpoint_name": ENDPOINT,
        "variant_name": variant,
        "user_id": f"u{user}",
        "inference_id": f"i{user}",
        "strategy": "ThompsonSampling",
        "propensity": 0.5,
        "assignment": "new",
    }


def line_size(event: dict) -> int:
    return len(json.dumps(event, separators=(",", ":"))) + 1


class Recorder:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.sealed = threading.Event()

    def __call__(self, key: str) -> None:
        self.keys.append(key)
        self.sealed.set()


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "abtest.sqlite3")
    store.register_endpoint(
        EndpointConfig(
            ENDPOINT, "ThompsonSampling", {}, 0, (VariantConfig("A"), VariantConfig("B"))
        ),
        0.0,
    )
    yield store
    store.close()


def counts(store: SqliteStore) -> dict[str, int]:
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint is not None
    return {m.variant_name: m.counts.invocation_count for m in endpoint.variants}


def sealed_lines(log: LocalEventLog, key: str) -> list[dict]:
    return [json.loads(line) for block in log.read_blocks(key) for line in split_lines(block)]


def test_seals_when_the_buffer_reaches_the_size_limit(tmp_path: Path) -> None:
    # GIVEN a log sealing at three events' worth of bytes and an interval far away
    recorder = Recorder()
    event = invocation("A", 0)
    log = LocalEventLog(
        tmp_path,
        buffer_interval_seconds=3600,
        buffer_size_bytes=3 * line_size(event),
        on_seal=recorder,
    )
    log.start()
    # WHEN seven events arrive
    for user in range(7):
        log.put([invocation("A", user)])
    deadline = time.monotonic() + 5
    while len(recorder.keys) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # THEN two files of three were sealed and handed over in order; one event is still buffered
    assert len(recorder.keys) == 2
    assert recorder.keys == log.sealed_keys()
    assert [[e["user_id"] for e in sealed_lines(log, k)] for k in recorder.keys] == [
        ["u0", "u1", "u2"],
        ["u3", "u4", "u5"],
    ]
    log.close()
    # AND closing seals the rest
    assert len(recorder.keys) == 3
    assert [e["user_id"] for e in sealed_lines(log, recorder.keys[2])] == ["u6"]


def test_a_put_that_fills_the_buffer_never_waits_for_the_disk_and_files_reach_it_before_counting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full buffer is sealed by the put that filled it, on the request's thread (the event
    loop): an fsync there stalled every request in flight. Each sealed file is synced by
    the drain instead, before aggregation (on_seal) reads it."""
    synced: list[tuple[str, int]] = []  # (file name, thread)
    real_fsync = os.fsync
    monkeypatch.setattr(
        os,
        "fsync",
        lambda fd: (
            synced.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, threading.get_ident())),
            real_fsync(fd),
        ),
    )
    counted: list[tuple[str, bool]] = []  # (key, synced before on_seal)
    recorder = Recorder()

    def on_seal(key: str) -> None:
        counted.append((key, any(name == key for name, _ in synced)))
        recorder(key)

    event = invocation("A", 0)
    log = LocalEventLog(
        tmp_path, buffer_interval_seconds=3600, buffer_size_bytes=line_size(event), on_seal=on_seal
    )
    log.start()
    log.put([event])  # fills the buffer: sealed here, on this thread
    assert recorder.sealed.wait(5)
    assert synced and all(thread != threading.get_ident() for _, thread in synced)
    log.close()
    assert counted == [(log.sealed_keys()[0], True)]


def test_seals_after_the_buffer_interval(tmp_path: Path) -> None:
    # GIVEN a log sealing every 0.1 s (and never by size)
    recorder = Recorder()
    log = LocalEventLog(
        tmp_path, buffer_interval_seconds=0.1, buffer_size_bytes=10**9, on_seal=recorder
    )
    log.start()
    try:
        started = time.monotonic()
        log.put([invocation("A", 1), invocation("B", 2)])
        # WHEN we wait for the timer
        assert recorder.sealed.wait(5)
        waited = time.monotonic() - started
        # THEN the events were sealed into one file, no sooner than the interval
        assert waited >= 0.1
        assert [e["user_id"] for e in sealed_lines(log, recorder.keys[0])] == ["u1", "u2"]
        assert not (tmp_path / BUFFER_NAME).exists()
    finally:
        log.close()
    # AND an empty buffer is never sealed into an empty file
    assert len(recorder.keys) == 1


def test_sealed_names_sort_by_time(tmp_path: Path) -> None:
    clock = ManualClock(start=1_700_000_000.0)
    log = LocalEventLog(tmp_path, buffer_interval_seconds=3600, buffer_size_bytes=1, clock=clock)
    log.start()
    for user in range(12):
        log.put([invocation("A", user)])
        clock.advance(0.5)
    log.close()
    keys = log.sealed_keys()
    assert len(keys) == 12
    assert [sealed_lines(log, k)[0]["user_id"] for k in keys] == [f"u{n}" for n in range(12)]


def test_concurrent_puts_are_each_written_once(tmp_path: Path) -> None:
    # GIVEN small files, so seals happen while 8 threads put
    log = LocalEventLog(tmp_path, buffer_interval_seconds=0.05, buffer_size_bytes=2_000)
    log.start()

    def writer(thread: int) -> None:
        for n in range(250):
            log.put([invocation("A", thread * 1000 + n)])

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    # THEN every event is in exactly one sealed file, none is torn
    users = [e["user_id"] for k in log.sealed_keys() for e in sealed_lines(log, k)]
    assert sorted(users) == sorted(f"u{t * 1000 + n}" for t in range(8) for n in range(250))
    assert len(log.sealed_keys()) > 1


def test_a_leftover_buffer_is_sealed_and_aggregated_once_at_start(tmp_path: Path, store) -> None:
    # GIVEN what a crashed process left: one sealed file it had aggregated, one it had not,
    # and an open buffer whose last line was torn mid-write
    folder = tmp_path / "events"
    first = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    first.on_seal = lambda key: aggregation.aggregate(store, first, key, 0.0)
    first.start()
    first.put([invocation("A", 1), invocation("B", 2)])
    first.flush()  # sealed and aggregated
    first.on_seal = None
    first.put([invocation("A", 3)])
    first.flush()  # sealed, never aggregated (the crash)
    first.close()
    (folder / BUFFER_NAME).write_bytes(
        (json.dumps(invocation("B", 4)) + "\n" + '{"type": "invoc').encode()
    )
    assert counts(store) == {"A": 1, "B": 1}

    # WHEN a new process starts on the folder
    log = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    log.on_seal = lambda key: aggregation.aggregate(store, log, key, 0.0)
    log.start()
    log.close()

    # THEN every complete event is counted exactly once, the torn line is kept aside
    assert counts(store) == {"A": 2, "B": 2}
    assert len(log.sealed_keys()) == 3
    rejected = [json.loads(line) for p in (folder / "rejected").iterdir() for line in p.open()]
    assert [r["line_number"] for r in rejected] == [2]
    assert "not JSON" in rejected[0]["reason"]


def test_aggregating_a_sealed_file_again_counts_nothing_twice(tmp_path: Path, store) -> None:
    log = LocalEventLog(tmp_path / "events", buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    log.start()
    log.put([invocation("A", n) for n in range(5)])
    log.close()
    (key,) = log.sealed_keys()
    assert aggregation.aggregate(store, log, key, 0.0).applied
    again = aggregation.aggregate(store, log, key, 1.0)
    assert not again.applied
    assert counts(store) == {"A": 5, "B": 0}


def test_events_put_before_a_crash_survive_without_close(tmp_path: Path) -> None:
    # Each put reaches the file before it returns: nothing waits in a process buffer.
    log = LocalEventLog(tmp_path, buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    log.put([invocation("A", 1)])
    lines = (tmp_path / BUFFER_NAME).read_text().splitlines()
    assert [json.loads(line)["user_id"] for line in lines] == ["u1"]


def test_a_folder_is_served_by_one_process_at_a_time(tmp_path: Path) -> None:
    first = LocalEventLog(tmp_path, buffer_interval_seconds=1, buffer_size_bytes=100)
    first.start()
    try:
        second = LocalEventLog(tmp_path, buffer_interval_seconds=1, buffer_size_bytes=100)
        with pytest.raises(ConfigError, match="in use by another abtest process"):
            second.start()
    finally:
        first.close()
    # released on close
    third = LocalEventLog(tmp_path, buffer_interval_seconds=1, buffer_size_bytes=100)
    third.start()
    third.close()


@pytest.mark.parametrize("key", ["../abtest.sqlite3", "sub/x.jsonl", ".lock"])
def test_keys_cannot_escape_the_sealed_folder(tmp_path: Path, key: str) -> None:
    log = LocalEventLog(tmp_path, buffer_interval_seconds=1, buffer_size_bytes=100)
    with pytest.raises(ValueError, match="not an event log key"):
        list(log.read_blocks(key))


def test_a_restart_reads_only_what_waits_however_long_the_history(tmp_path: Path, store) -> None:
    folder = tmp_path / "events"
    recorder = Recorder()
    first = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=1)
    first.on_seal = lambda key: (aggregation.aggregate(store, first, key, 0.0), recorder(key))
    first.start()
    for user in range(20):
        first.put([invocation("A", user)])
    first.close()
    assert len(recorder.keys) == 20 and first.waiting_keys() == []

    second = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=1)
    second.on_seal = recorder
    second.start()
    second.close()

    assert len(recorder.keys) == 20  # nothing already counted was read again
    assert counts(store) == {"A": 20, "B": 0}
    assert len(second.sealed_keys()) == 20  # the history is all still there


def test_a_file_counted_just_before_a_crash_is_counted_once_and_then_moved(
    tmp_path: Path, store
) -> None:
    folder = tmp_path / "events"
    first = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    first.start()
    first.put([invocation("A", n) for n in range(3)])
    first.close()  # no on_seal: the file waits
    (key,) = first.waiting_keys()
    aggregation.aggregate(store, first, key, 0.0)  # counted, then the crash before the move

    log = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    log.on_seal = lambda key: aggregation.aggregate(store, log, key, 0.0)
    log.start()
    log.close()

    assert counts(store) == {"A": 3, "B": 0}
    assert (log.waiting_keys(), log.applied_keys()) == ([], [key])


def test_applied_files_past_the_retention_go_and_waiting_ones_stay(tmp_path: Path) -> None:
    day = 24 * 3600.0
    clock = ManualClock(start=1_700_000_000.0)
    folder = tmp_path / "events"
    # No start(): no timer thread, so each flush() hands the file to on_seal here and now.
    log = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9, clock=clock)
    for user, on_seal in ((1, lambda key: None), (2, None), (3, lambda key: None)):
        log.on_seal = on_seal  # None: the file is never aggregated and must survive anything
        log.put([invocation("A", user)])
        log.flush()
        clock.advance(4.5 * day)
    log.close()
    _old, waiting, recent = log.sealed_keys()  # 13.5, 9 and 4.5 days old now
    assert log.waiting_keys() == [waiting]

    again = LocalEventLog(
        folder,
        buffer_interval_seconds=3600,
        buffer_size_bytes=1,
        clock=clock,
        retention_seconds=5 * day,
    )
    again.start()
    again.close()

    assert again.sealed_keys() == [waiting, recent]


class FailingFirst:
    """Aggregation that fails (as a store busy or unreachable does) the first `failures`
    times it is asked, then counts: records when each try came."""

    def __init__(self, store: SqliteStore, log: LocalEventLog, failures: int) -> None:
        self.store, self.log, self.failures = store, log, failures
        self.tries: list[float] = []
        self.counted = threading.Event()

    def __call__(self, key: str) -> None:
        self.tries.append(time.monotonic())
        if len(self.tries) <= self.failures:
            raise StoreUnavailableError("database is locked")
        aggregation.aggregate(self.store, self.log, key, 0.0)
        self.counted.set()


def test_a_file_whose_aggregation_failed_is_counted_while_the_process_runs(
    tmp_path: Path, store, monkeypatch
) -> None:
    # GIVEN a store that refuses the first three tries, and retries from 50 ms
    monkeypatch.setattr(eventlog, "RETRY_FIRST_SECONDS", 0.05)
    log = LocalEventLog(tmp_path / "events", buffer_interval_seconds=0.05, buffer_size_bytes=10**9)
    log.on_seal = aggregate = FailingFirst(store, log, failures=3)
    log.start()
    try:
        # WHEN a file is sealed, and no one flushes, stops or restarts anything
        log.put([invocation("A", n) for n in range(3)])
        # THEN it is counted once the store answers, and moves to applied/
        assert aggregate.counted.wait(30)
        assert counts(store) == {"A": 3, "B": 0}
        assert len(aggregate.tries) == 4
        # each wait at least twice the last: a store that stays down is not asked in a loop
        gaps = [later - earlier for earlier, later in pairwise(aggregate.tries)]
        assert [gap >= 0.05 * 2**n for n, gap in enumerate(gaps)] == [True] * 3, gaps
        for _ in range(100):
            if log.applied_keys():
                break
            time.sleep(0.05)
        assert len(log.applied_keys()) == 1 and log.waiting_keys() == []
    finally:
        log.close()
    assert counts(store) == {"A": 3, "B": 0}  # the close counted nothing twice


def test_a_failed_file_is_tried_once_more_by_a_flush_and_at_close(tmp_path: Path, store) -> None:
    # GIVEN a file whose aggregation failed, its next try an hour away (the default backoff
    # is far shorter; nothing here waits for it)
    log = LocalEventLog(tmp_path / "events", buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    log.on_seal = aggregate = FailingFirst(store, log, failures=2)
    log.start()
    log.put([invocation("B", 1)])
    log.flush()  # fails
    assert counts(store) == {"A": 0, "B": 0} and len(log.waiting_keys()) == 1
    # WHEN someone flushes (it fails again), then the process stops
    log.flush()
    assert len(aggregate.tries) == 2
    log.close()
    # THEN the stop counted it, once
    assert len(aggregate.tries) == 3
    assert counts(store) == {"A": 0, "B": 1}
    assert log.waiting_keys() == [] and len(log.applied_keys()) == 1


def test_the_owner_counts_what_its_workers_left_when_it_stops(tmp_path: Path, store) -> None:
    # GIVEN the owner of the folder and two workers: one stopped while its store refused
    # (its file waits in sealed/), one killed with events still in its buffer
    folder = tmp_path / "events"
    owner = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9)
    owner.on_seal = lambda key: aggregation.aggregate(store, owner, key, 0.0)
    owner.start()
    refused = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9, worker=1)
    refused.on_seal = FailingFirst(store, refused, failures=10)
    refused.start()
    refused.put([invocation("A", n) for n in range(2)])
    refused.close()
    killed = LocalEventLog(folder, buffer_interval_seconds=3600, buffer_size_bytes=10**9, worker=2)
    killed.start()
    killed.put([invocation("B", 7)])  # and no close: the process is gone
    assert counts(store) == {"A": 0, "B": 0}
    assert len(owner.waiting_keys()) == 1

    # WHEN the owner stops, after its workers
    owner.close()

    # THEN every event is counted, once, and nothing waits for a next start
    assert counts(store) == {"A": 2, "B": 1}
    assert owner.waiting_keys() == []
    assert not any(p.stat().st_size for p in folder.glob("buffer*.open"))
