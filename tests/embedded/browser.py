"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright.

Playwright never downloads a browser here: it launches the system's (`ABTEST_CHROMIUM`,
default /usr/bin/chromium), which `make test` installs when it is missing. Screenshots go
to test-artifacts/ (gitignored) so a failure can be looked at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("ABTEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MISSING = (
    f"the browser tests need Chromium at {CHROMIUM}: run `make test` (it installs Debian's "
    "chromium package as root), or `sudo apt-get install chromium`, or set ABTEST_CHROMIUM"
)


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"


# Whether a test's call failed, noted by `pytest_runtest_makereport` in conftest.py.
CALL_FAILED = pytest.StashKey[bool]()


def keep_screenshot_if_failed(page: Any, request: pytest.FixtureRequest) -> None:
    """The page's full screenshot in test-artifacts/ if the test of `request` failed."""
    if request.node.stash.get(CALL_FAILED, True):
        page.screenshot(path=screenshot_path(request.node.name), full_page=True)
