"""`abtest serve` refusing to start says why in one line, with what to do; never a traceback."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.embedded.helpers import ABTEST, write_config

# Slow: `abtest serve` processes.
pytestmark = pytest.mark.slow


def serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ABTEST, "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_locked_database_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    # GIVEN a data dir whose database another process holds the write lock on
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    holder = sqlite3.connect(data_dir / "abtest.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # WHEN abtest serve starts on it (and waits out the store's 5 s busy timeout)
        result = serve("--config", str(write_config(tmp_path)), "--data-dir", str(data_dir))
    finally:
        holder.close()

    # THEN it exits 1 with one line naming the dir, the reason and the way out
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(data_dir) in lines[0]
    assert "database is locked" in lines[0]
    assert "another process holds it" in lines[0]


def test_a_database_that_cannot_be_opened_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    # GIVEN a data dir where the database file cannot be created (a folder is in the way)
    data_dir = tmp_path / "data"
    (data_dir / "abtest.sqlite3").mkdir(parents=True)

    # WHEN abtest serve starts on it
    result = serve("--config", str(write_config(tmp_path)), "--data-dir", str(data_dir))

    # THEN it exits 1 with one line naming the dir and what to check
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(data_dir) in lines[0]
    assert "unable to open database file" in lines[0]
    assert "writable" in lines[0]


def test_a_port_in_use_is_one_line_and_leaves_no_data_dir(tmp_path: Path) -> None:
    # The data dir (database and event folders) was made before the port was tried.
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*ABTEST, "serve", "--config", str(write_config(tmp_path)), "--port", str(port),
             "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip

    assert (result.returncode, result.stderr) == (
        1,
        f"abtest: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )
    assert not data_dir.exists()
