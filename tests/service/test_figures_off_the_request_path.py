"""The allocation and /stats' figures are worked out when aggregation changes the counters,
stored with them, and read by requests: no request and no /stats call integrates."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sys
from collections import Counter

import pydantic
import pytest

import bandit.posterior
from abtest.usecases.convert import Conversion
from abtest.usecases.endpoints import current_allocation
from abtest.usecases.invoke import Invocation
from tests.service.doubles import ENDPOINT

INTEGRATION = bandit.posterior.best_arm_probabilities


@pytest.fixture
def integrations(monkeypatch) -> Counter:
    """How often the allocation's numerical integration runs, wherever it was imported."""
    calls: Counter = Counter()

    def counted(*args, **kwargs):
        calls["runs"] += 1
        return INTEGRATION(*args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "best_arm_probabilities", None) is INTEGRATION:
            monkeypatch.setattr(module, "best_arm_probabilities", counted)
    return calls


def serve_users(usecases, first: int, users: int, rng: random.Random) -> list:
    answers = []
    for n in range(first, first + users):
        answer = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id=f"u{n}", data="x"))
        answers.append(answer)
        if rng.random() < (0.3 if answer.endpoint_variant == "Champion1" else 0.6):
            usecases.convert(
                Conversion(ENDPOINT, user_id=f"u{n}", inference_id=answer.inference_id)
            )
    return answers


def test_requests_and_stats_read_the_figures_aggregation_stored(
    usecases, log, clock, store, integrations
) -> None:
    # GIVEN Thompson sampling past warm-up, its counters aggregated twice
    rng = random.Random(3)
    for batch in range(2):
        serve_users(usecases, batch * 100, 100, rng)
        usecases.aggregate(log, log.deliver())
    assert integrations["runs"] > 0  # aggregation worked the allocation and decision out
    integrations.clear()
    clock.advance(10)  # past the endpoint cache: requests read the record again

    # WHEN new users are served and /stats is asked, many times
    answers = serve_users(usecases, 1000, 200, rng)
    stats = [usecases.stats(ENDPOINT) for _ in range(20)]

    # THEN nothing was integrated on the way
    assert integrations["runs"] == 0
    # AND what they used is what the counters say, as worked out now
    endpoint = store.get_endpoint(ENDPOINT)
    expected = current_allocation(endpoint)
    assert stats[-1].allocation == expected
    assert {a.assignment for a in answers} == {"new"}
    assert {a.strategy for a in answers} == {"ThompsonSampling"}
    assert {a.propensity for a in answers if a.target_variant == "Challenger1"} == {
        expected["Challenger1"]
    }


def test_a_record_without_stored_figures_is_still_answered_right(
    usecases, log, clock, store, integrations
) -> None:
    # GIVEN counters whose figures were never stored (a file from before, or a crash)
    serve_users(usecases, 0, 60, random.Random(4))
    usecases.aggregate(log, log.deliver())
    store.save_figures = lambda *_: False  # the save is lost
    serve_users(usecases, 100, 60, random.Random(5))
    usecases.aggregate(log, log.deliver())
    clock.advance(10)
    endpoint = store.get_endpoint(ENDPOINT)
    assert endpoint.fresh_figures is None

    # WHEN /stats and a new user are served, THEN both use the allocation of the counters
    expected = current_allocation(endpoint)
    assert usecases.stats(ENDPOINT).allocation == expected
    answer = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id="late", data="x"))
    assert answer.propensity == expected[answer.endpoint_variant]


def test_the_figures_digest_is_the_one_stored_figures_were_made_with(usecases, log, store):
    # Stored figures are fresh only while the record's digest (`Endpoint.basis`) is the one
    # they were worked out from: a change to how the digest is written would make every
    # endpoint's stored figures stale at once. This is how it was written when they were
    # stored (dataclasses.asdict, deeply), on a record with every kind of field it covers.
    serve_users(usecases, 0, 120, random.Random(6))
    usecases.aggregate(log, log.deliver())
    endpoint = store.get_endpoint(ENDPOINT)
    inputs = {
        f.name: getattr(endpoint, f.name)
        for f in dataclasses.fields(endpoint)
        if f.name not in ("figures", "status", "updated_at", "lifecycle")
    }

    def stored_as(value):
        if isinstance(value, pydantic.BaseModel):
            return value.model_dump()
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else repr(value)

    text = json.dumps(inputs, sort_keys=True, default=stored_as)

    assert endpoint.variants[0].counts.users > 0 and endpoint.settings is not None
    assert endpoint.basis == hashlib.sha256(text.encode()).hexdigest()[:32]
    assert endpoint.fresh_figures is not None
