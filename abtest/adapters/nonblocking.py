"""Answering a request on the event loop only while nothing in it can block.

The embedded server first answers an invocation on its event loop, inside `on_the_loop()`:
no hand-off to a thread, the cheapest way through. An adapter that would have to wait
there (a SQLite write finding the write lock taken, which elsewhere queues for it up to
its busy timeout) raises WouldBlock instead, having changed nothing; the server then
answers the same request again from the start, on a worker thread. So a route may be
answered this way only if its first step that can wait comes before anything the
request changes.
"""

from __future__ import annotations

from contextvars import ContextVar

# Per asyncio task; a worker thread (run_in_executor) never sees it set.
_ON_THE_LOOP: ContextVar[bool] = ContextVar("abtest_on_the_loop", default=False)


class WouldBlock(BaseException):
    """The request must move to a thread. A BaseException, so that no `except Exception`
    on its way (the API's 500, the model-error count) takes it for a failure."""


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
