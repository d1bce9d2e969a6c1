"""`abtest demo`: the article's review-helpfulness A/B test, end to end on this machine.

Starts the embedded server on a free loopback port with two locally trained variants,
runs the simulation over HTTP until the experiment concludes on its own (`auto_conclude`
in reviews.toml) and some users after that, waits for the event log to deliver, then
writes the results CSV and plots and stops the server (which seals and aggregates the
buffer). It prints when the experiment concluded and the share the winner served after.
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
    users: int  # simulated, in all
    endpoint: dict[str, Any]  # /admin/show at the end: the state, the winner, the audit log
    # The users served from the conclusion on (0 if it did not conclude), and how many of
    # them the winner served: all of them, since a concluded experiment serves only it.
    after_conclusion: int = 0
    winner_served: int = 0


def run_demo(
    out_dir: str | Path = "demo-output",
    *,
    users: int = 3_000,
    after_conclusion: int = 200,
    batch_size: int = 20,
    seed: int = 0,
    progress: bool = True,
    out: Callable[[str], Any] = print,
) -> DemoResult:
    """Run the demo into `out_dir` (its data dir is started afresh each time): at most
    `users` users, ending `after_conclusion` users after the experiment concluded."""
    from abtest.demo import history_plots, plots
    from abtest.demo.simulation import (
        ApiClient,
        conversions_sent,
        format_stats,
        served_concluded,
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
                until=lambda so_far: len(served_concluded(so_far)) >= after_conclusion,
            )
            # Feedback arrives when the event log seals (every 0.2 s here, a minute on AWS).
            expected = (len(results), conversions_sent(results))
            stats = wait_for_counts(client, ENDPOINT_NAME, expected, timeout=10.0)
            # What the service recorded after each delivery, for the plot of its history.
            history = client.history(ENDPOINT_NAME, MAX_LIMIT)["snapshots"]
            endpoint = client.admin("show", {"endpoint_name": ENDPOINT_NAME})
    conclusion = _conclusion(endpoint)
    after = served_concluded(results)
    served = sum(r.variant == endpoint["winner"] for r in after)
    csv_path = write_csv(results, out_path / "results.csv")
    figures = plots.save_all(results, out_path)
    threshold = stats["decision"].get("probability_threshold")
    concluded = (conclusion["at"], endpoint["winner"]) if conclusion else None
    figures.append(history_plots.save(history, out_path, threshold, concluded))
    out(format_stats(endpoint))  # /stats' figures, with the state and what new users get now
    if conclusion is None:
        out(
            f"not concluded within {len(results):,} users ({endpoint['state']}; the decision: "
            f"{stats['decision']['reason']}); conclude by hand with abtest endpoints conclude"
        )
    else:
        first = len(results) - len(after) + 1
        out(
            f"concluded by {conclusion['actor']} after {first - 1:,} users, on the decision "
            f"then ({conclusion['reason']})"
        )
        out(
            f"after the conclusion (users {first:,} to {len(results):,}): {endpoint['winner']} "
            f"served {served} of {len(after)} users ({served / len(after):.1%})"
            if after
            else "after the conclusion: no users were left to serve"
        )
    out(f"results: {csv_path}")
    out("plots:   " + ", ".join(str(p) for p in figures))
    out(f"config:  {config_path}")
    out(f"data:    {data_dir} (assignments, metrics and the event log; a new run starts it afresh)")
    out(
        f"explore: abtest serve --config {config_path} --data-dir {data_dir}, "
        "then open /docs at the URL it prints"
    )
    return DemoResult(stats, csv_path, figures, len(results), endpoint, len(after), served)


def _conclusion(endpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The audit entry that concluded the experiment, if it is concluded."""
    if endpoint["state"] != "concluded":
        return None
    return next(e for e in reversed(endpoint["audit_log"]) if e["action"] == "conclude")
