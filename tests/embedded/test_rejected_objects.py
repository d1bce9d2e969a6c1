"""An event file mostly of another format: kept aside line by line, warned about, in /health."""

from __future__ import annotations

import json
import time

import httpx

from abtest.errors import StoreUnavailableError
from tests.embedded.helpers import ENDPOINT, stats_counts


def test_a_file_mostly_of_another_format_is_warned_about_and_counted_in_health(
    start_server, http: httpx.Client, tmp_path, caplog
) -> None:
    # GIVEN a running server
    server = start_server(data_dir=tmp_path / "data")
    assert http.get(f"{server.url}/health").json()["counts"]["MostlyRejectedObjects"] == 0

    # WHEN something writes events of another format to its event log, and they are sealed
    with caplog.at_level("WARNING", logger="abtest"):
        server.runtime.events.put([{"event": "click", "user": f"u{n}"} for n in range(5)])
        server.runtime.events.flush()
        deadline = time.monotonic() + 10  # the log's own thread may be the one aggregating
        while time.monotonic() < deadline:
            counts = http.get(f"{server.url}/health").json()["counts"]
            if counts["MostlyRejectedObjects"]:
                break
            time.sleep(0.05)

    # THEN /health counts the file, the log says so, and every line is kept with its reason
    assert counts["MostlyRejectedObjects"] == 1
    assert "were rejected (5 of 5)" in caplog.text
    (kept,) = (tmp_path / "data" / "events" / "rejected").iterdir()
    lines = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [line["line_number"] for line in lines] == [1, 2, 3, 4, 5]


def test_files_whose_aggregation_fails_show_in_health_until_they_are_counted(
    start_server, http: httpx.Client, tmp_path, caplog
) -> None:
    # GIVEN a running server whose store refuses aggregation for now
    server = start_server(data_dir=tmp_path / "data")
    events = server.runtime.events
    aggregate, refusing = events.on_seal, [True]

    def on_seal(key: str) -> None:
        if refusing[0]:
            raise StoreUnavailableError("database is locked")
        aggregate(key)

    events.on_seal = on_seal
    assert http.get(f"{server.url}/health").json()["event_files_waiting"] == 0

    # WHEN a user is served and the event log sealed
    data = json.dumps({"instances": ["battery lasted months"], "configuration": {"k": 1}})
    body = {"endpoint_name": ENDPOINT, "user_id": "u1", "data": data}
    assert http.post(f"{server.url}/invocation", json=body).status_code == 200
    with caplog.at_level("ERROR", logger="abtest"):
        events.flush()

    # THEN /health says a file waits, and the log says why
    assert http.get(f"{server.url}/health").json()["event_files_waiting"] == 1
    assert "database is locked" in caplog.text
    # and once the store answers again, the file is counted and nothing waits
    refusing[0] = False
    events.flush()
    assert http.get(f"{server.url}/health").json()["event_files_waiting"] == 0
    stats = http.post(f"{server.url}/stats", json={"endpoint_name": ENDPOINT}).json()
    assert sum(n for n, _ in stats_counts(stats).values()) == 1
