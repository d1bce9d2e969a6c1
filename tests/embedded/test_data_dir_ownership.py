"""One data dir, one server: a second one is refused before it can change anything."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from abtest.embedded.wiring import Runtime
from abtest.errors import ConfigError
from abtest.usecases.invoke import Invocation
from tests.embedded.helpers import ENDPOINT, write_config


def counters(runtime: Runtime) -> dict[str, int]:
    endpoint = runtime.store.get_endpoint(ENDPOINT)
    return {m.variant_name: m.counts.invocation_count for m in endpoint.variants}


def test_a_refused_second_server_leaves_the_running_ones_variants_and_counters(tmp_path: Path):
    data = tmp_path / "data"
    three = {
        "Champion1": "abtest.demo.reviews:champion",
        "Challenger1": "abtest.demo.reviews:challenger",
        "Challenger2": "abtest.demo.reviews:challenger",
    }
    running = Runtime(write_config(tmp_path, variants=three), data, rng=random.Random(1))
    running.start()
    try:
        for user in range(30):
            running.use_cases["invocation"](
                Invocation(
                    endpoint_name=ENDPOINT, user_id=f"u{user}", data='{"instances": ["great"]}'
                )
            )
        running.events.flush()
        before = counters(running)
        assignment = running.store.get_assignment(ENDPOINT, "u0", running.clock.now())

        one = {"Champion1": "abtest.demo.reviews:champion"}
        second = Runtime(write_config(tmp_path, variants=one, name="one.toml"), data)
        with pytest.raises(ConfigError, match="in use by another abtest process"):
            second.start()
        second.close()

        assert sum(before.values()) == 30
        assert counters(running) == before
        now = running.clock.now()
        assert running.store.get_assignment(ENDPOINT, "u0", now) == assignment
    finally:
        running.close()


def test_the_data_dir_is_free_again_after_a_refused_start(tmp_path: Path):
    data = tmp_path / "data"
    first = Runtime(write_config(tmp_path), data)
    first.start()
    refused = Runtime(write_config(tmp_path, name="b.toml"), data)
    with pytest.raises(ConfigError):
        refused.start()
    first.close()

    again = Runtime(write_config(tmp_path, name="c.toml"), data)
    again.start()
    again.close()


def test_the_event_log_retention_comes_from_the_config(tmp_path: Path):
    config = write_config(tmp_path, extra_endpoint="")
    text = config.read_text().replace("[event_log]\n", "[event_log]\nretention_days = 30\n", 1)
    config.write_text(text)

    runtime = Runtime(config, tmp_path / "data")

    assert runtime.events.retention_seconds == 30 * 24 * 3600
    runtime.close()
