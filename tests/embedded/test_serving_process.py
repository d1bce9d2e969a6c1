"""A serving process's start-up objects are out of the collector's view, its GIL slices short."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_serving_process_freezes_its_start_and_shortens_gil_slices() -> None:
    script = (
        "import gc, sys\n"
        "from abtest.embedded.server import SWITCH_INTERVAL_SECONDS, settle_serving_process\n"
        "settle_serving_process()\n"
        "print(gc.get_freeze_count(), sys.getswitchinterval() == SWITCH_INTERVAL_SECONDS)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ
    ).stdout.split()
    # Every import (uvicorn, pydantic, the runtime's modules) is frozen: thousands of objects.
    assert int(out[0]) > 10_000
    assert out[1] == "True"
