"""In-process telemetry: counts kept in memory, read by the embedded server and tests."""

from __future__ import annotations

import threading
from collections import Counter


class CountingTelemetry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str, str | None]] = Counter()

    def count(self, name: str, endpoint_name: str, variant_name: str | None = None) -> None:
        with self._lock:
            self.counts[(name, endpoint_name, variant_name)] += 1

    def total(self, name: str) -> int:
        with self._lock:
            return sum(n for (key, _, _), n in self.counts.items() if key == name)
