"""Session fixtures: each test stage synthesized once (see `tests.infra.synth`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.synth import Synth, synth_stage


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Under xdist each worker's base temp sits in one directory per run: share that one.
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "infra-synth"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def dev(synth_dir: Path) -> Synth:
    return synth_stage("dev", synth_dir)


@pytest.fixture(scope="session")
def prod(synth_dir: Path) -> Synth:
    return synth_stage("prod", synth_dir)


@pytest.fixture(scope="session")
def qa(synth_dir: Path) -> Synth:
    return synth_stage("qa", synth_dir)


@pytest.fixture(scope="session", params=["dev", "prod"])
def stage(request: pytest.FixtureRequest, synth_dir: Path) -> Iterator[Synth]:
    yield synth_stage(request.param, synth_dir)
