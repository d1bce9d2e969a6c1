"""Every line the service logs is counted by the regex fast path, not by json.loads.

The service runs over the real SQLite store and the real local event log (which writes
with `events.encode`, as the Firehose adapter does); every assignment kind and every
awkward id a client may send is logged, then each sealed block and each line of it must
be taken by `_Tally.fast`. A line that drops to the slow path still counts, but costs
a json.loads: this test is what notices when the line format and the regex drift apart.
"""

from __future__ import annotations

import json

import pytest

from abtest.adapters.eventlog import LocalEventLog
from abtest.aggregation import _Tally
from abtest.errors import StoreUnavailableError
from abtest.events import ASSIGNMENT_KINDS, encode, split_lines
from abtest.lifecycle import Action, AuditEntry
from abtest.usecases.convert import Conversion
from abtest.usecases.invoke import Invocation
from tests.service.doubles import ENDPOINT

ODD_IDS = [
    "Zoë",  # non-ASCII: written as a \\u escape
    "用户-42",
    "emoji \U0001f600",  # a surrogate pair
    'say "hi"',
    "back\\slash\\",
    "tab\tnewline\nbell\x07",
    "del\x7f and nul\x00",
    "/slashes/ and </script>",
    " ",
]


@pytest.fixture
def log(tmp_path):
    """Replaces the in-memory double: the service writes through the real local event log."""
    event_log = LocalEventLog(
        tmp_path / "events", buffer_interval_seconds=3600, buffer_size_bytes=10**9
    )
    yield event_log
    event_log.close()


def logged_blocks(log: LocalEventLog) -> list[bytes]:
    log.flush()
    return [block for key in log.sealed_keys() for block in log.read_blocks(key)]


def endpoints(store):
    return store.store.get_endpoint


def drive(usecases, store, monkeypatch) -> None:
    """Invocations of every assignment kind and conversions keyed by odd ids."""
    invoke = usecases.invoke
    for n, user_id in enumerate(ODD_IDS):
        invoke(Invocation(endpoint_name=ENDPOINT, user_id=user_id, data="x"))  # new
        invoke(Invocation(endpoint_name=ENDPOINT, user_id=user_id, data="x"))  # existing
        for reward in (1.0, 0.0, 0.25, 1e-7):
            usecases.convert(
                Conversion(
                    endpoint_name=ENDPOINT,
                    user_id=user_id,
                    inference_id=f"{ODD_IDS[-1 - n]}#{reward}",
                    reward=reward,
                )
            )
        usecases.convert(Conversion(endpoint_name=ENDPOINT, user_id=user_id))  # id minted
    invoke(
        Invocation(
            endpoint_name=ENDPOINT, user_id="chosen", data="x", endpoint_variant="Challenger1"
        )
    )
    invoke(Invocation(endpoint_name=ENDPOINT, data="x", inference_id='inf "odd" é'))
    for context in ({"country": "fr", "age": 31, "vip": True, "score": -2.5e-8}, {"note": 'q"é'}):
        invoke(
            Invocation(endpoint_name=ENDPOINT, user_id="with context", data="x", context=context)
        )
    before = store.get_endpoint(ENDPOINT).lifecycle
    paused = before.moved(ENDPOINT, Action.PAUSE)
    store.change_lifecycle(ENDPOINT, before, paused, AuditEntry(0.0, "test", "pause"))
    invoke.endpoints.forget(ENDPOINT)
    invoke(Invocation(endpoint_name=ENDPOINT, user_id="paused", data="x"))  # paused
    usecases.convert(Conversion(endpoint_name=ENDPOINT, user_id="paused"))  # null propensity
    concluded = paused.moved(ENDPOINT, Action.CONCLUDE, "Champion1")
    store.change_lifecycle(ENDPOINT, paused, concluded, AuditEntry(0.0, "test", "conclude"))
    invoke.endpoints.forget(ENDPOINT)
    invoke(Invocation(endpoint_name=ENDPOINT, user_id="after", data="x"))  # concluded

    def unavailable(*args, **kwargs):
        raise StoreUnavailableError("sqlite: database is locked")

    monkeypatch.setattr(store, "get_assignment", unavailable)
    monkeypatch.setattr(store, "create_assignment", unavailable)
    invoke(Invocation(endpoint_name=ENDPOINT, user_id="Zoë", data="x"))  # fallback


def test_every_line_the_service_logs_takes_the_fast_path(usecases, store, log, monkeypatch):
    drive(usecases, store, monkeypatch)
    blocks = logged_blocks(log)
    lines = [line for block in blocks for line in split_lines(block)]
    events = [json.loads(line) for line in lines]

    invocations = [e for e in events if e["type"] == "invocation"]
    assert {e["assignment"] for e in invocations} == set(ASSIGNMENT_KINDS)
    assert sum("context" in e for e in invocations) == 2
    conversions = [e for e in events if e["type"] == "conversion"]
    assert {e["user_id"] for e in conversions} == {*ODD_IDS, "paused"}
    assert len(conversions) == 5 * len(ODD_IDS) + 1

    for block in blocks:
        tally = _Tally(endpoints(store), [].append)
        assert tally.fast(block, len(split_lines(block)))
    for line, event in zip(lines, events, strict=True):
        tally = _Tally(endpoints(store), [].append)
        assert tally.fast(line + b"\n", 1), line
        if event["type"] == "conversion":
            key = tally.keyed[0][0].key
            assert (key.user_id, key.inference_id) == (event["user_id"], event["inference_id"])


def test_the_same_line_with_its_keys_reordered_is_not_taken(usecases, store, log, monkeypatch):
    drive(usecases, store, monkeypatch)
    blocks = logged_blocks(log)
    for event_type in ("invocation", "conversion"):
        line = next(
            line
            for block in blocks
            for line in split_lines(block)
            if json.loads(line)["type"] == event_type
        )
        event = json.loads(line)
        assert encode(event) == line + b"\n"  # the line as written round-trips...
        first, *rest = event.items()
        spoiled = encode(dict([*rest, first]))  # ...but another key order is not the format

        assert not _Tally(endpoints(store), [].append).fast(spoiled, 1)
        assert not _Tally(endpoints(store), [].append).fast(line + b"\n" + spoiled, 2)
