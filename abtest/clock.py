"""Clocks: the system one, and a settable one for tests and simulations."""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to; lets tests check TTLs without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        """Moves with `now`: a test that advances the clock during a call makes it slow."""
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
