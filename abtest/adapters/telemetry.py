"""In-process telemetry: counts kept in memory, shown by the embedded server's `/health`."""

from __future__ import annotations

import threading
from collections import Counter

from abtest.ports import Count


class CountingTelemetry:
    """Telemetry for one process: a counter per (name, endpoint, variant)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[Count, str | None, str | None]] = Counter()

    def count(
        self, name: Count, endpoint_name: str | None, variant_name: str | None = None
    ) -> None:
        with self._lock:
            self._counts[(name, endpoint_name, variant_name)] += 1

    def totals(self) -> dict[str, int]:
        """Every count by name, zeros included, so a reader sees what is tracked."""
        totals = dict.fromkeys(Count, 0)
        with self._lock:
            for (name, _, _), n in self._counts.items():
                totals[name] += n
        return {str(name): n for name, n in totals.items()}
