"""An event file mostly of another format: kept aside line by line, warned about, in /health."""

from __future__ import annotations

import json
import time

import httpx


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
