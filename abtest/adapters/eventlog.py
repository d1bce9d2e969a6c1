"""The local Firehose: events buffered in a file on disk, sealed into immutable JSON-lines files.

Layout under `folder`:
  buffer.open             the open buffer; every `put` is appended and flushed to the OS
  buffer-<n>.open         worker n's own buffer, when several processes serve (`worker=n`)
  sealed/<key>.jsonl      sealed files waiting to be aggregated, named by UTC time
  applied/<key>.jsonl     sealed files whose counts are in the store (the event log proper)
  rejected/<key>.jsonl    lines aggregation could not use, with the reason
  .lock                   held while a process owns the folder

Like Firehose, the buffer is sealed every `buffer_interval_seconds` (counted from its
first event) or as soon as it holds `buffer_size_bytes`, and each sealed file is handed
to `on_seal(key)` (the runtime's aggregation) from a background thread, so feedback is
delayed as on AWS. A process crash loses nothing written: at `start` a leftover buffer is
sealed and every file still in `sealed/` is aggregated, which counts each file once because
aggregation is idempotent per key. A file moves to `applied/` only after its counts are
committed, so a start reads just what a crash or a failure left waiting, however long the
history. A file whose aggregation fails (the store busy or unreachable) is tried again
while the process runs, after 1 s, then twice as long each time up to a minute, and once
more when it stops: a failure delays its counts, never holds them until a restart.
Applied files older than `retention_seconds` (if set) are deleted at start, as the
bucket's lifecycle rule does on AWS.

Several processes can log to one folder: the one that owns it (`worker=None`) seals what
every buffer left behind and aggregates what waits at its start, before the workers
start; each worker (`worker=n`) appends to its own buffer and aggregates only the files
it seals, so no two processes ever hand the same file to aggregation. The owner does the
same again when it stops, after its workers have: whatever a worker left (a buffer, a file
whose last try failed) is counted before the process goes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from abtest.clock import SystemClock
from abtest.errors import ConfigError
from abtest.events import encode, whole_lines
from abtest.ports import Clock
from abtest.records import RejectedLine

logger = logging.getLogger("abtest")

BUFFER_NAME = "buffer.open"
READ_BYTES = 1 << 20
SUFFIX = ".jsonl"
STAMP = "%Y%m%dT%H%M%S.%fZ"
# A file whose aggregation failed is tried again after RETRY_FIRST_SECONDS, then twice as
# long after each failure up to RETRY_MAX_SECONDS: a busy store (SQLite waits 5 s for a
# lock) is usually free again within seconds, an unreachable one is not asked in a loop.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


def _checked(object_key: str) -> str:
    if "/" in object_key or "\\" in object_key or object_key.startswith("."):
        raise ValueError(f"not an event log key: {object_key!r}")
    return object_key


class _RejectedFile:
    """Rejected lines written to a temporary file as they come, opened at the first one."""

    def __init__(self, temporary: Path) -> None:
        self.temporary = temporary
        self._file: BinaryIO | None = None

    def write(self, line: RejectedLine) -> None:
        if self._file is None:
            self._file = self.temporary.open("wb")
        self._file.write(line.json_line())

    def close(self) -> bool:
        """Close the file; whether there is one (any line written)."""
        if self._file is None:
            return False
        self._file.close()
        return True


def _sync(path: Path) -> None:
    """Flush a file's data to the disk (what was written is in the OS already)."""
    with path.open("rb") as file:
        os.fsync(file.fileno())


def _sealed_at(key: str) -> float | None:
    """When a file was sealed, from its key (events-<UTC stamp>-<random>.jsonl)."""
    try:
        stamp = key.split("-")[1]
        return datetime.strptime(stamp, STAMP).replace(tzinfo=UTC).timestamp()
    except (IndexError, ValueError):
        return None


def make_folder(folder: Path, what: str) -> None:
    """`folder` (`what` it is, for the error) made if missing; a ConfigError naming what is
    in the way, if anything (it was `[Errno 17] File exists: 'data/events'` for a file where
    the folder goes)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocker = next(
            (p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None
        )
        why = f"{blocker} is a file, not a folder" if blocker else (error.strerror or str(error))
        raise ConfigError(f"{folder}: cannot make {what}: {why}") from None


class LocalEventLog:
    def __init__(
        self,
        folder: str | Path,
        *,
        buffer_interval_seconds: float = 60.0,
        buffer_size_bytes: int = 1024 * 1024,
        on_seal: Callable[[str], Any] | None = None,
        clock: Clock | None = None,
        retention_seconds: float | None = None,
        worker: int | None = None,
    ) -> None:
        """Nothing is sealed or aggregated until `start()`: `on_seal` may need this object first.

        With `worker` set, this is one of several processes sharing a folder another one
        owns (see the module's docstring)."""
        if buffer_interval_seconds <= 0 or buffer_size_bytes <= 0:
            raise ValueError("buffer_interval_seconds and buffer_size_bytes must be > 0")
        self.folder = Path(folder)
        self.sealed_dir = self.folder / "sealed"
        self.applied_dir = self.folder / "applied"
        self.rejected_dir = self.folder / "rejected"
        self.retention_seconds = retention_seconds
        self.buffer_interval_seconds = buffer_interval_seconds
        self.buffer_size_bytes = buffer_size_bytes
        self.on_seal = on_seal
        self.clock = clock or SystemClock()
        self.worker = worker
        name = BUFFER_NAME if worker is None else f"buffer-{worker}.open"
        self._buffer_path = self.folder / name
        for folder_ in (self.folder, self.sealed_dir, self.applied_dir, self.rejected_dir):
            make_folder(folder_, "the event log's folder")
        # The condition's own lock, taken directly by `put` (every request): entering the
        # Condition is a Python call around the same acquire.
        self._mutex = threading.RLock()
        self._lock = threading.Condition(self._mutex)
        # One drain at a time: a flush then returns only after the timer's drain, which may
        # hold a key it took before the flush, has handed that key over too.
        self._drain_lock = threading.Lock()
        self._buffer: BinaryIO | None = None
        self._buffered_bytes = 0
        self._first_put_at = 0.0  # time.monotonic() of the buffer's first event
        self._pending: deque[str] = deque()  # sealed keys waiting for on_seal
        # Keys whose aggregation failed: when to try each again, and how often it failed.
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._folder_lock: BinaryIO | None = None

    # -- EventSink ------------------------------------------------------------------

    def put(self, events: list[Mapping[str, Any]]) -> None:
        self.put_lines([encode(event) for event in events])

    def put_lines(self, lines: list[bytes]) -> None:
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        if not data:
            return
        with self._mutex:
            if self._buffer is None:
                self._buffer = open(self._buffer_path, "ab", buffering=0)  # noqa: SIM115
                self._buffered_bytes = self._buffer.tell()
                self._first_put_at = time.monotonic()
            # Unbuffered: one write() per put, so a crash of this process loses nothing.
            self._buffer.write(data)
            self._buffered_bytes += len(data)
            if self._buffered_bytes >= self.buffer_size_bytes:
                self._seal_locked()
            elif self._buffered_bytes == len(data):
                self._lock.notify()  # the worker starts the interval clock

    # -- EventArchive ---------------------------------------------------------------

    def read_blocks(self, object_key: str) -> Iterator[bytes]:
        with self._path(object_key).open("rb") as file:
            yield from whole_lines(iter(lambda: file.read(READ_BYTES), b""))

    @contextmanager
    def open_rejected(self, object_key: str) -> Iterator[_RejectedFile]:
        path = self.rejected_dir / _checked(object_key)
        rejected = _RejectedFile(path.with_suffix(".tmp"))
        try:
            yield rejected
        except BaseException:
            rejected.close()
            rejected.temporary.unlink(missing_ok=True)
            raise
        if rejected.close():
            os.replace(rejected.temporary, path)  # whole or not at all

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Own the folder, seal a leftover buffer, aggregate what waits, start the timer.

        A waiting file may have been counted just before a crash; aggregating it again is
        a no-op (idempotent per key), so this is safe after a clean stop and a crash alike.
        """
        if self.worker is None:
            self.own_folder()
            self._expire()
        self._recover()
        self._drain()
        self._stopping = False
        self._worker = threading.Thread(target=self._run, name="abtest-eventlog", daemon=True)
        self._worker.start()

    def _recover(self) -> None:
        """Seal what buffers hold and queue what waits in `sealed/`: the owner every
        process's (no worker runs at its start or at its close), a worker its own buffer."""
        owner = self.worker is None
        with self._lock:
            leftovers = self.folder.glob("buffer*.open") if owner else [self._buffer_path]
            for leftover in sorted(leftovers):
                if self._buffer is None and leftover.exists() and leftover.stat().st_size > 0:
                    self._seal_locked(leftover)
            if owner:
                pending = set(self._pending)
                self._pending.extend(k for k in self.waiting_keys() if k not in pending)

    def flush(self) -> None:
        """Seal what is buffered now and aggregate every sealed file not yet handed over,
        and those waiting to be tried again."""
        with self._lock:
            self._seal_and_queue_locked()
        self._drain()

    def close(self) -> None:
        """Stop the timer, seal what is buffered, aggregate every file that waits (each
        tried once more, however recently it failed), release the folder."""
        worker = self._worker
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if worker is not None:
            worker.join()
        self._worker = None
        with self._lock:
            self._seal_and_queue_locked()
        if worker is not None:  # started: the owner takes up what its workers left
            self._recover()
        self._drain()
        if self._folder_lock is not None:
            self._folder_lock.close()  # releases the flock
            self._folder_lock = None

    def _seal_and_queue_locked(self) -> None:
        if self._buffered_bytes:
            self._seal_locked()
        self._pending.extend(sorted(self._retry_at))
        self._retry_at.clear()

    def sealed_keys(self) -> list[str]:
        """Keys of every sealed file, waiting or applied, oldest first: the whole event log."""
        return sorted(self.waiting_keys() + self.applied_keys())

    def waiting_keys(self) -> list[str]:
        """Keys of sealed files not yet known to be aggregated, oldest first."""
        return sorted(p.name for p in self.sealed_dir.glob(f"*{SUFFIX}"))

    def applied_keys(self) -> list[str]:
        return sorted(p.name for p in self.applied_dir.glob(f"*{SUFFIX}"))

    # -- internals ------------------------------------------------------------------

    def _seal_locked(self, source: Path | None = None) -> str:
        """Rename the buffer to a new sealed file (the caller holds the lock).

        Not synced to disk here: a `put` that fills the buffer seals it on the request's
        thread (the event loop, on the embedded server), where an fsync stalled every
        request in flight for 3-20 ms. The drain syncs each file before aggregation reads
        it; a crash of the process loses nothing either way (every put is in the OS)."""
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
        stamp = datetime.fromtimestamp(self.clock.now(), UTC).strftime(STAMP)
        # The random part keeps keys unique across restarts and clock jumps: a reused key
        # would be skipped as already aggregated.
        key = f"events-{stamp}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        os.replace(source or self._buffer_path, self.sealed_dir / key)
        self._buffered_bytes = 0
        self._pending.append(key)
        self._lock.notify()
        return key

    def _drain(self) -> None:
        """Hand every pending key to on_seal, oldest first; failures stay for the next start."""
        with self._drain_lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                key = self._pending.popleft()
            try:
                _sync(self.sealed_dir / key)  # on disk before anything is counted from it
                if self.on_seal is None:
                    continue
                self.on_seal(key)
            except Exception:
                self._failed(key)
                continue
            # Only now: a crash before this rename leaves the file waiting, to be counted
            # (again, as a no-op) at the next start.
            os.replace(self.sealed_dir / key, self.applied_dir / key)
            with self._lock:
                self._failures.pop(key, None)

    def _failed(self, key: str) -> None:
        """Log the failure and set the key's next try (see RETRY_FIRST_SECONDS)."""
        with self._lock:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
            self._retry_at[key] = time.monotonic() + delay
            self._lock.notify()
        logger.exception(
            "aggregating %s failed (%d time(s)); tried again in %.0f s, and at the next "
            "start if this process stops first",
            key,
            failures,
            delay,
        )

    def _due_retries_locked(self, now: float) -> float | None:
        """Queue the keys due for another try; seconds until the next one, if any waits."""
        due = sorted(key for key, at in self._retry_at.items() if at <= now)
        for key in due:
            del self._retry_at[key]
            self._pending.append(key)
        return min(self._retry_at.values()) - now if self._retry_at else None

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._pending:
                    now = time.monotonic()
                    wait = self._due_retries_locked(now)
                    if self._pending:
                        break
                    if self._buffered_bytes:
                        due = self._first_put_at + self.buffer_interval_seconds - now
                        if due <= 0:
                            self._seal_locked()
                            break
                        wait = due if wait is None else min(wait, due)
                    self._lock.wait(wait)  # None: until a put or a seal notifies
                if self._stopping:
                    return
            self._drain()

    def _path(self, object_key: str) -> Path:
        waiting = self.sealed_dir / _checked(object_key)
        return waiting if waiting.exists() else self.applied_dir / object_key

    def _expire(self) -> None:
        """Delete applied files (and their rejected lines) older than the retention."""
        if not self.retention_seconds:
            return
        horizon = self.clock.now() - self.retention_seconds
        gone = 0
        for key in self.applied_keys():
            sealed_at = _sealed_at(key)
            if sealed_at is None or sealed_at >= horizon:
                continue
            (self.applied_dir / key).unlink(missing_ok=True)
            (self.rejected_dir / key).unlink(missing_ok=True)
            gone += 1
        if gone:
            logger.info("deleted %d event file(s) past the retention of the event log", gone)

    def own_folder(self) -> None:
        """Take the folder's lock, or raise ConfigError if another process holds it."""
        if self._folder_lock is not None:
            return
        handle = open(self.folder / ".lock", "wb")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigError(
                f"{self.folder}: in use by another abtest process; give each server its own "
                "data dir"
            ) from None
        self._folder_lock = handle
