"""Answering a request on the event loop only while nothing in it can block.

The embedded server first answers an invocation on its event loop, inside `on_the_loop()`:
no hand-off to a thread, the cheapest way through. An adapter that would have to wait
there (a SQLite write finding the write lock taken, which elsewhere queues for it up to
its busy timeout) raises WouldBlock instead, having changed nothing; the server then
answers the same request again from the start: on the loop once what held it is free, when
that is a thread of this process (`WriteGate`), else on a worker thread. So a route may be
answered this way only if its first step that can wait comes before anything the
request changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar

# Per asyncio task; a worker thread (run_in_executor) never sees it set.
_ON_THE_LOOP: ContextVar[bool] = ContextVar("abtest_on_the_loop", default=False)


class WouldBlock(BaseException):
    """The request must wait off the loop. A BaseException, so that no `except Exception`
    on its way (the API's 500, the model-error count) takes it for a failure.

    `when_free`, if given, calls its argument (from any thread) once what blocked is free
    (`WriteGate.when_free`): the loop can wait for that without a thread. None: nothing
    will say (another process holds the lock), so only a thread can wait."""

    def __init__(
        self, reason: str, when_free: Callable[[Callable[[], None]], None] | None = None
    ) -> None:
        super().__init__(reason)
        self.when_free = when_free


class WriteGate:
    """One writer at a time among this process's threads, queued in the OS.

    SQLite's own wait for its write lock polls with sleeps growing to 100 ms; beside an
    event loop that takes the lock without waiting, a thread asking for it again and again
    lost to the loop for up to 2.2 s (p99 0.5 s, 64 connections of new users, measured).
    A thread here blocks on a lock and is woken at its release; the loop only tries it,
    and is told (`when_free`) when the holder lets go, so it can wait without a thread."""

    __slots__ = ("_lock", "_mutex", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Guards `_waiting` and the release beside it, so no wake-up falls between them.
        self._mutex = threading.Lock()
        self._waiting: list[Callable[[], None]] = []

    def try_take(self) -> bool:
        return self._lock.acquire(blocking=False)

    def take(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the gate; whether it was taken."""
        return self._lock.acquire(timeout=timeout)

    def give_back(self) -> None:
        """Release the gate and wake whoever `when_free` registered while it was held."""
        with self._mutex:
            self._lock.release()
            waiting, self._waiting = self._waiting, []
        for wake in waiting:
            wake()

    def when_free(self, wake: Callable[[], None]) -> None:
        """Call `wake` once the gate is released (now, if it is free already)."""
        with self._mutex:
            if self._lock.locked():
                self._waiting.append(wake)
                return
        wake()


class on_the_loop:
    """Inside it, `is_on_the_loop()` is true (a class: cheaper than a generator's context
    manager, and entered on every invocation the server answers on its loop)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _ON_THE_LOOP.set(True)

    def __exit__(self, *_: object) -> None:
        _ON_THE_LOOP.reset(self._token)


def is_on_the_loop() -> bool:
    """Whether a wait now would hold the event loop (then raise WouldBlock instead)."""
    return _ON_THE_LOOP.get()
