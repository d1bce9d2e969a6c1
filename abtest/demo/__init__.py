"""`abtest demo`: the article's review-helpfulness A/B test, end to end on this machine.

Starts the embedded server on a free loopback port with two locally trained variants,
runs the simulation over HTTP, waits for the event log to deliver, then writes the
results CSV and plots and stops the server (which seals and aggregates the buffer).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENDPOINT_NAME = "reviews-helpfulness"

# Like abtest/demo/reviews.toml, with a short seal interval so feedback arrives within the
# demo's seconds rather than Firehose's minute.
DEMO_CONFIG = f"""\
[endpoint]
name = "{ENDPOINT_NAME}"
strategy = "TopTwoThompson"
strategy_params = {{ beta = 0.9, floor = 0.01 }}
warmup = 100

[event_log]
buffer_interval_seconds = 0.2
buffer_size_bytes = 1048576

[[variants]]
name = "Champion1"
initial_weight = 1.0
model = "abtest.demo.reviews:champion"

[[variants]]
name = "Challenger1"
initial_weight = 1.0
model = "abtest.demo.reviews:challenger"
"""


@dataclass(frozen=True, slots=True)
class DemoResult:
    stats: dict[str, Any]
    csv_path: Path
    plots: list[Path]
    users: int


def run_demo(
    out_dir: str | Path = "demo-output",
    *,
    users: int = 2_000,
    batch_size: int = 20,
    seed: int = 0,
    progress: bool = True,
    out: Callable[[str], Any] = print,
) -> DemoResult:
    """Run the demo into `out_dir` (its data dir is started afresh each time)."""
    from abtest.demo import plots
    from abtest.demo.reviews import held_out_reviews
    from abtest.demo.simulation import (
        ApiClient,
        format_stats,
        simulate,
        wait_for_invocations,
        write_csv,
    )
    from abtest.embedded.config import load_config
    from abtest.embedded.server import EmbeddedServer
    from abtest.embedded.wiring import Runtime

    out_path = Path(out_dir)
    data_dir = out_path / "abtest-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    out_path.mkdir(parents=True, exist_ok=True)
    config_path = out_path / "reviews.toml"
    config_path.write_text(DEMO_CONFIG)
    config = load_config(config_path)

    with EmbeddedServer(Runtime(config, data_dir)) as server:
        out(f"abtest demo: serving {ENDPOINT_NAME!r} on {server.url} (docs {server.url}/docs)")
        with ApiClient(server.url) as client:
            results = simulate(
                client,
                ENDPOINT_NAME,
                held_out_reviews(),
                users=users,
                batch_size=batch_size,
                seed=seed,
                progress=progress,
            )
            # Feedback arrives when the event log seals (every 0.2 s here, a minute on AWS).
            stats = wait_for_invocations(client, ENDPOINT_NAME, users, timeout=10.0)
    csv_path = write_csv(results, out_path / "results.csv")
    figures = plots.save_all(results, out_path)
    out(format_stats(stats))
    out(f"results: {csv_path}")
    out("plots:   " + ", ".join(str(p) for p in figures))
    return DemoResult(stats, csv_path, figures, users)
