"""`abtest demo`: the article's review-helpfulness A/B test, end to end on this machine.

Starts the embedded server on a free loopback port with two locally trained variants,
runs the simulation over HTTP, waits for the event log to deliver, then writes the
results CSV and plots and stops the server (which seals and aggregates the buffer).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENDPOINT_NAME = "reviews-helpfulness"


def _demo_config() -> str:
    """abtest/demo/reviews.toml (what `abtest serve` runs) with a short seal interval, so
    that feedback arrives within the demo's seconds rather than Firehose's minute."""
    text, sealed = re.subn(
        r"^buffer_interval_seconds = [0-9.]+",
        "buffer_interval_seconds = 0.2",
        Path(__file__).with_name("reviews.toml").read_text(),
        flags=re.MULTILINE,
    )
    if sealed != 1:
        raise RuntimeError("reviews.toml has no buffer_interval_seconds line to shorten")
    return text


DEMO_CONFIG = _demo_config()


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
    from abtest.demo import history_plots, plots
    from abtest.demo.simulation import (
        ApiClient,
        conversions_sent,
        format_stats,
        simulate,
        wait_for_counts,
        write_csv,
    )
    from abtest.demo.worlds import ReviewsWorld
    from abtest.embedded.config import load_config
    from abtest.embedded.server import EmbeddedServer
    from abtest.embedded.wiring import Runtime
    from abtest.history import MAX_LIMIT

    out_path = Path(out_dir)
    data_dir = out_path / "abtest-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    out_path.mkdir(parents=True, exist_ok=True)
    config_path = out_path / "reviews.toml"
    config_path.write_text(DEMO_CONFIG)
    config = load_config(config_path)

    with EmbeddedServer(Runtime(config, data_dir)) as server:
        # No URL: this server stops when the simulation ends (the last line says how to serve it).
        out(f"abtest demo: serving {ENDPOINT_NAME!r} on a free loopback port until the run ends")
        with ApiClient(server.url) as client:
            results = simulate(
                client,
                ENDPOINT_NAME,
                ReviewsWorld(batch_size=batch_size),
                users=users,
                seed=seed,
                progress=progress,
            )
            # Feedback arrives when the event log seals (every 0.2 s here, a minute on AWS).
            expected = (users, conversions_sent(results))
            stats = wait_for_counts(client, ENDPOINT_NAME, expected, timeout=10.0)
            # What the service recorded after each delivery, for the plot of its history.
            history = client.history(ENDPOINT_NAME, MAX_LIMIT)["snapshots"]
    csv_path = write_csv(results, out_path / "results.csv")
    figures = plots.save_all(results, out_path)
    threshold = stats["decision"].get("probability_threshold")
    figures.append(history_plots.save(history, out_path, threshold))
    out(format_stats(stats))
    out(f"results: {csv_path}")
    out("plots:   " + ", ".join(str(p) for p in figures))
    out(f"config:  {config_path}")
    out(f"data:    {data_dir} (assignments, metrics and the event log; a new run starts it afresh)")
    out(
        f"explore: abtest serve --config {config_path} --data-dir {data_dir}, "
        "then open /docs at the URL it prints"
    )
    return DemoResult(stats, csv_path, figures, users)
