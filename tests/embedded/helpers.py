"""Model callables and config files for the embedded tests (`tests.embedded.helpers:<name>`)."""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from abtest.clock import ManualClock

# On a subprocess's PYTHONPATH, so that `tests.embedded.helpers:<name>` imports there too.
REPO = Path(__file__).resolve().parents[2]
# The console script beside this interpreter (`abtest = abtest.cli:main`), as a user runs it.
SCRIPT = Path(sys.executable).with_name("abtest")
ABTEST = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "abtest.cli"]
ENDPOINT = "reviews-helpfulness"


def echo(data: str, content_type: str) -> dict[str, Any]:
    """Answers with what it was sent, so tests see the payload the model got."""
    return {"data": data, "content_type": content_type}


def constant(data: str, content_type: str) -> list[int]:
    return [1]


def broken(data: str, content_type: str) -> Any:
    raise RuntimeError("weights file is corrupt")


def not_json(data: str, content_type: str) -> Any:
    return object()


def half_an_emoji(data: str, content_type: str) -> dict[str, str]:
    """Answers text UTF-8 cannot encode: the first half of a surrogate pair."""
    return {"text": "\ud83d"}


def sleepy(data: str, content_type: str) -> dict[str, float]:
    """Sleeps `{"sleep": seconds}`: a slow model, holding its thread as a real one would."""
    seconds = float(json.loads(data)["sleep"])
    time.sleep(seconds)
    return {"slept": seconds}


def thread_name(data: str, content_type: str) -> dict[str, str]:
    """Answers with the thread that called it."""
    return {"thread": threading.current_thread().name}


def write_config(
    folder: Path,
    *,
    interval: float = 0.2,
    size: int = 1_048_576,
    strategy: str = "ThompsonSampling",
    variants: dict[str, str] | None = None,
    name: str = "endpoint.toml",
    extra_endpoint: str = "",
    inline: bool = False,
) -> Path:
    """A config file for `variants` (name -> model); the demo's two models by default.

    `inline` declares every variant `inline = true`."""
    variants = variants or {
        "Champion1": "abtest.demo.reviews:champion",
        "Challenger1": "abtest.demo.reviews:challenger",
    }
    text = (
        f'[endpoint]\nname = "{ENDPOINT}"\nstrategy = "{strategy}"\nwarmup = 0\n{extra_endpoint}\n'
        f"[event_log]\nbuffer_interval_seconds = {interval}\nbuffer_size_bytes = {size}\n"
    )
    for variant, model in variants.items():
        text += f'\n[[variants]]\nname = "{variant}"\ninitial_weight = 1.0\nmodel = "{model}"\n'
        text += "inline = true\n" if inline else ""
    path = folder / name
    path.write_text(text)
    return path


def logged_events(data_dir: Path) -> list[dict[str, Any]]:
    """Every event in the data dir's event log: sealed files and the open buffer."""
    events_dir = data_dir / "events"
    paths = sorted(
        (p for folder in ("sealed", "applied") for p in (events_dir / folder).glob("*.jsonl")),
        key=lambda p: p.name,
    )
    if (events_dir / "buffer.open").exists():
        paths.append(events_dir / "buffer.open")
    return [json.loads(line) for path in paths for line in path.read_text().splitlines() if line]


def counts_by_variant(events: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """(invocations, conversions) per variant, as aggregation should count them."""
    counts: dict[str, list[int]] = {}
    for event in events:
        pair = counts.setdefault(event["variant_name"], [0, 0])
        if event["type"] == "invocation" and event.get("assignment") not in ("manual", "fallback"):
            pair[0] += 1
        elif event["type"] == "conversion":
            pair[1] += 1
    return {variant: (n, c) for variant, (n, c) in counts.items()}


def stats_counts(stats: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        m["variant_name"]: (m["invocation_count"], m["conversion_count"])
        for m in stats["variant_metrics"]
        if m["invocation_count"] or m["conversion_count"]
    }


# Calls of `flaky` so far in this process: every fifth one fails, so exactly 20 % of any
# five consecutive calls do, whatever the order requests arrive in.
_FLAKY_CALLS = itertools.count(1)


def flaky(data: str, content_type: str) -> list[int]:
    """A model that fails 20 % of its calls, deterministically (every fifth)."""
    if next(_FLAKY_CALLS) % 5 == 0:
        raise RuntimeError("out of GPU memory")
    return [1]


# The clock of a server whose latency the tests read: `slow_by_clock` advances it by what
# its call "takes", so latencies are exact and no test sleeps.
CLOCK = ManualClock()
_TIMED_CALLS = itertools.count(1)


def slow_by_clock(data: str, content_type: str) -> list[int]:
    """Takes 3 ms, but 800 ms on every tenth call (10 % above 500 ms), by `CLOCK`."""
    CLOCK.advance(0.8 if next(_TIMED_CALLS) % 10 == 0 else 0.003)
    return [1]


def fast_by_clock(data: str, content_type: str) -> list[int]:
    """Takes 3 ms by `CLOCK`."""
    CLOCK.advance(0.003)
    return [1]


class RecordingTransport:
    """An asyncio transport that keeps what is written to it, for the connection tests."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
