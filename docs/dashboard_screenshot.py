"""Write docs/dashboard.png, the README's picture of /dashboard after `make demo`'s traffic.

    make dashboard-screenshot     # = .venv/bin/python docs/dashboard_screenshot.py

Serves the demo endpoint (its config, models and 0.2 s seal interval) on a free loopback
port, runs the demo's simulation against it (2,000 users by default), then opens the
dashboard in headless Chromium (Debian's, as the browser tests do) and keeps what it shows.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

from abtest.demo import DEMO_CONFIG, ENDPOINT_NAME
from abtest.demo.simulation import ApiClient, conversions_sent, simulate, wait_for_counts
from abtest.demo.worlds import ReviewsWorld
from abtest.embedded.config import load_config
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "dashboard.png")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--chromium", default=os.environ.get("ABTEST_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "reviews.toml"
        config.write_text(DEMO_CONFIG)
        runtime = Runtime(load_config(config), Path(folder) / "data", rng=random.Random(args.seed))
        with EmbeddedServer(runtime) as server:
            with ApiClient(server.url) as client:
                world = ReviewsWorld(batch_size=20)
                results = simulate(
                    client, ENDPOINT_NAME, world, users=args.users, seed=args.seed, progress=False
                )
                expected = (args.users, conversions_sent(results))
                wait_for_counts(client, ENDPOINT_NAME, expected, timeout=10.0)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 640})
                page.goto(f"{server.url}/dashboard")
                page.wait_for_function("Number(document.body.dataset.refreshed || 0) >= 1")
                page.wait_for_timeout(500)  # plotly's transitions
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
