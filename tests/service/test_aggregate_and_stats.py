from __future__ import annotations

import gc
import json
import random
import tracemalloc
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from abtest import guardrails
from abtest.http.stats_bodies import StatsResponse
from abtest.usecases.convert import Conversion
from abtest.usecases.invoke import Invocation
from tests.service.doubles import ENDPOINT, Catalog, config


def simulate(usecases, rng: random.Random, users: int, rates: dict[str, float]) -> None:
    for n in range(users):
        invoked = usecases.invoke(Invocation(endpoint_name=ENDPOINT, user_id=f"user-{n}", data="x"))
        if rng.random() < rates[invoked.target_variant]:
            usecases.convert(
                Conversion(
                    endpoint_name=ENDPOINT, user_id=f"user-{n}", inference_id=invoked.inference_id
                )
            )


def test_stats_counts_equal_the_delivered_events(usecases, log):
    simulate(usecases, random.Random(1), 200, {"Champion1": 0.2, "Challenger1": 0.6})
    key = log.deliver()

    result = usecases.aggregate(log, key)
    stats = usecases.stats(ENDPOINT)

    assert result.applied and result.rejected == 0
    by_variant = {m.variant_name: m for m in stats.endpoint.variants}
    for variant in ("Champion1", "Challenger1"):
        invocations = [
            e for e in log.events if e["type"] == "invocation" and e["variant_name"] == variant
        ]
        conversions = [
            e for e in log.events if e["type"] == "conversion" and e["variant_name"] == variant
        ]
        assert by_variant[variant].counts.invocation_count == len(invocations)
        assert by_variant[variant].counts.conversion_count == len(conversions)
        assert by_variant[variant].counts.reward_sum == pytest.approx(len(conversions))
    assert sum(stats.allocation.values()) == pytest.approx(1.0)


def test_redelivered_object_counts_once(usecases, log):
    simulate(usecases, random.Random(2), 30, {"Champion1": 0.5, "Challenger1": 0.5})
    key = log.deliver()

    first, second = usecases.aggregate(log, key), usecases.aggregate(log, key)

    assert (first.applied, second.applied) == (True, False)
    stats = usecases.stats(ENDPOINT)
    assert sum(m.counts.invocation_count for m in stats.endpoint.variants) == 30


def test_an_event_the_redrive_wrote_twice_counts_once(usecases, log):
    """Objects under `redriven/` claim every event: the queue may hold an event twice, a
    redrive may die between writing an object and deleting its messages."""
    simulate(usecases, random.Random(3), 40, {"Champion1": 0.5, "Challenger1": 0.5})
    lines = log.deliver("staging.jsonl")
    del log.objects[lines]  # never delivered by Firehose: the events were parked
    body = b"".join(json.dumps(e).encode() + b"\n" for e in log.events)
    log.objects["events/redriven/2026/11/30/03/a.jsonl"] = body
    log.objects["events/redriven/2026/11/30/04/b.jsonl"] = body + body  # and twice in one

    first = usecases.aggregate(log, "events/redriven/2026/11/30/03/a.jsonl")
    second = usecases.aggregate(log, "events/redriven/2026/11/30/04/b.jsonl")

    counted = usecases.stats(ENDPOINT).endpoint.variants
    invocations = sum(e["type"] == "invocation" for e in log.events)
    conversions = sum(e["type"] == "conversion" for e in log.events)
    assert conversions > 5
    assert sum(m.counts.invocation_count for m in counted) == invocations
    assert sum(m.counts.conversion_count for m in counted) == conversions
    assert (first.duplicates, second.duplicates) == (0, 2 * (invocations + conversions))


def test_a_firehose_object_counts_every_invocation_line_without_claims(usecases, log):
    """Outside `redriven/`, invocations are not claimed (a claim per request would double
    the cost of the event log): two equal lines are two invocations."""
    simulate(usecases, random.Random(4), 10, {"Champion1": 0.0, "Challenger1": 0.0})
    body = b"".join(json.dumps(e).encode() + b"\n" for e in log.events)
    log.objects["events/2026/11/30/03/x"] = body + body

    usecases.aggregate(log, "events/2026/11/30/03/x")

    counted = usecases.stats(ENDPOINT).endpoint.variants
    assert sum(m.counts.invocation_count for m in counted) == 20


def test_bad_lines_are_kept_aside_and_never_fail_the_batch(usecases, log):
    good = {"type": "invocation", "endpoint_name": ENDPOINT, "variant_name": "Champion1"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "endpoint_name": "unknown-endpoint"}),
        json.dumps({**good, "variant_name": "Ghost"}),
        json.dumps({**good, "type": "conversion", "reward": 7}),
        json.dumps({**good, "type": "click"}),
        json.dumps([1, 2]),
        "",
        json.dumps(good),
    ]
    log.objects["mixed.jsonl"] = "\n".join(lines).encode()

    result = usecases.aggregate(log, "mixed.jsonl")

    assert result.applied and result.events == 2
    reasons = [r.reason for r in log.rejected["mixed.jsonl"]]
    assert [r.line_number for r in log.rejected["mixed.jsonl"]] == [2, 3, 4, 5, 6, 7]
    assert reasons[0].startswith("not JSON")
    assert "unknown endpoint" in reasons[1] and "unknown variant" in reasons[2]
    assert "reward" in reasons[3] and "unknown event type" in reasons[4]
    stats = usecases.stats(ENDPOINT)
    assert {m.variant_name: m.counts.invocation_count for m in stats.endpoint.variants} == {
        "Champion1": 2,
        "Challenger1": 0,
    }


GOOD = {"type": "invocation", "endpoint_name": ENDPOINT, "variant_name": "Champion1"}


def _object(good: int, foreign: int) -> bytes:
    """`good` invocations and `foreign` lines of another writer's format."""
    lines = [GOOD] * good + [{"event": "click", "user": f"u{n}"} for n in range(foreign)]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_an_object_mostly_of_another_format_is_counted_for_the_alarm_once(
    usecases, log, telemetry, caplog
):
    log.objects["foreign.jsonl"] = _object(good=1, foreign=9)

    with caplog.at_level("WARNING", logger="abtest"):
        first = usecases.aggregate(log, "foreign.jsonl")
        again = usecases.aggregate(log, "foreign.jsonl")  # delivered twice

    assert (first.applied, first.events, first.rejected) == (True, 1, 9)
    assert first.mostly_rejected and not again.applied
    assert len(log.rejected["foreign.jsonl"]) == 9  # each kept aside, with its reason
    assert telemetry.totals()["MostlyRejectedObjects"] == 1  # the object, not each delivery
    assert "most lines of foreign.jsonl were rejected (9 of 10)" in caplog.text


class _ForeignObject:
    """An archive of one object of another format, made block by block as it is read, whose
    rejected lines are counted and dropped: the memory measured is aggregation's alone."""

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks
        self.kept = 0

    def read_blocks(self, object_key: str):
        for b in range(self.blocks):
            yield b"".join(
                json.dumps({"event": "click", "user": f"u{b}-{n}", "pad": "x" * 1000}).encode()
                + b"\n"
                for n in range(1_000)
            )

    @contextmanager
    def open_rejected(self, object_key: str):
        def write(line) -> None:
            self.kept += 1

        yield SimpleNamespace(write=write)


def _peak_aggregating(usecases, archive: _ForeignObject, key: str) -> int:
    tracemalloc.start()
    try:
        result = usecases.aggregate(archive, key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines = archive.blocks * 1_000
    assert (result.events, result.rejected, archive.kept) == (0, lines, lines)
    assert result.mostly_rejected
    return peak


def test_an_object_rejected_whole_is_streamed_to_its_rejected_lines_not_held(usecases):
    # 2 MB and 8 MB objects of another format, every line rejected.
    small = _peak_aggregating(usecases, _ForeignObject(blocks=2), "small.jsonl")
    large = _peak_aggregating(usecases, _ForeignObject(blocks=8), "large.jsonl")

    # Flat with the object's size: held, the rejected lines would take 4x more for 4x more.
    assert large < 1.5 * small, f"peak {large / 1e6:.1f} MB against {small / 1e6:.1f} MB"


def test_an_object_with_a_few_bad_lines_is_no_alarm(usecases, log, telemetry):
    log.objects["some.jsonl"] = _object(good=5, foreign=5)

    result = usecases.aggregate(log, "some.jsonl")

    assert (result.events, result.rejected, result.mostly_rejected) == (5, 5, False)
    assert telemetry.totals()["MostlyRejectedObjects"] == 0


def test_manual_and_fallback_invocations_are_logged_but_not_counted(usecases, log):
    usecases.invoke(
        Invocation(endpoint_name=ENDPOINT, user_id="m", data="x", endpoint_variant="Champion1")
    )
    key = log.deliver()

    result = usecases.aggregate(log, key)

    # No trial of the experiment: only the call itself, which the guardrails read.
    counts = result.counts[ENDPOINT]["Champion1"]
    assert result.events == 1
    assert (counts.invocation_count, counts.users, counts.model_errors) == (0, 0, 0)
    assert guardrails.model_calls(counts) == 1


def test_allocation_moves_toward_the_better_variant(usecases, log):
    """After feedback, Thompson sends most new users to the variant that converts 3x better."""
    rng = random.Random(3)
    for batch in range(6):
        simulate_from = batch * 100
        for n in range(simulate_from, simulate_from + 100):
            invoked = usecases.invoke(
                Invocation(endpoint_name=ENDPOINT, user_id=f"user-{n}", data="x")
            )
            rate = {"Champion1": 0.1, "Challenger1": 0.3}[invoked.target_variant]
            if rng.random() < rate:
                usecases.convert(Conversion(endpoint_name=ENDPOINT, user_id=f"user-{n}"))
        usecases.aggregate(log, log.deliver())

    stats = usecases.stats(ENDPOINT)

    assert stats.allocation["Challenger1"] > 0.9
    assert stats.decision["winner"] in (None, "Challenger1")


def test_stats_of_unknown_endpoint_is_404(usecases):
    from abtest.errors import NotFoundError

    with pytest.raises(NotFoundError):
        usecases.stats("nope")


@pytest.mark.parametrize(
    ("strategy", "params", "epsilon"),
    [
        ("EpsilonGreedy", {"epsilon": 0.3}, 0.3),
        ("TopTwoThompson", {"beta": 0.6}, None),
        ("ThompsonSampling", {}, None),
    ],
)
def test_stats_report_the_strategy_params_and_epsilon_when_there_is_one(
    usecases, strategy, params, epsilon
):
    usecases.registration.catalog = Catalog(config(strategy, strategy_params=params))
    usecases.registration.register(ENDPOINT)

    stats = StatsResponse.of(usecases.stats(ENDPOINT)).model_dump()

    assert (stats["strategy"], stats["strategy_params"], stats["epsilon"]) == (
        strategy,
        params,
        epsilon,
    )


def test_stats_count_the_users_still_needed_at_the_allocation_new_users_get(usecases, log):
    rng = random.Random(4)
    simulate(usecases, rng, 400, {"Champion1": 0.10, "Challenger1": 0.14})
    usecases.aggregate(log, log.deliver())

    stats = usecases.stats(ENDPOINT)

    from abtest.usecases.endpoints import variant_metrics
    from bandit.estimates import decision_estimates
    from bandit.stats import users_to_call

    # Users are the unit and their propensities are logged: the call rests on the weighted
    # estimates, and so does the count of users it still needs.
    champion, challenger = variant_metrics(stats.endpoint)
    weighted, _, estimates = decision_estimates((champion, challenger))
    assert weighted
    expected = users_to_call(
        champion,
        challenger,
        (estimates["Champion1"], estimates["Challenger1"]),
        (stats.allocation["Champion1"], stats.allocation["Challenger1"]),
        0.05,
    )
    assert stats.decision["reason"] == "no_clear_winner"
    assert expected is not None and expected > 0
    assert stats.decision["users_needed"] == expected
    assert stats.decision["advice"]


def test_an_applied_object_reads_the_endpoint_record_twice(usecases, store, log):
    """Each read of the record is a DynamoDB GetItem of the whole item on AWS: aggregation
    reads it for the reward kind, then once more for the figures, and the history snapshot
    and the auto-conclusion take the record the figures were stored from."""
    simulate(usecases, random.Random(3), 50, {"Champion1": 0.3, "Challenger1": 0.5})
    key = log.deliver()
    store.calls.clear()

    assert usecases.aggregate(log, key).applied
    assert store.calls["get_endpoint"] == 2
    [snapshot] = store.snapshots(ENDPOINT, 10)  # and the snapshot is the figures' record's
    assert sum(v.invocation_count for v in snapshot.variants) == 50


def test_counting_an_object_pauses_the_cycle_collector_and_leaves_it_as_it_was(
    usecases, log, monkeypatch
):
    simulate(usecases, random.Random(3), 40, {"Champion1": 0.2, "Challenger1": 0.6})
    read = log.read_blocks
    keys = [log.deliver(f"events/{n}.jsonl") for n in range(3)]
    log.objects[keys[1]] = log.objects[keys[2]] = log.objects[keys[0]]
    during: list[bool] = []

    def read_blocks(object_key: str):
        during.append(gc.isenabled())
        yield from read(object_key)
        if object_key == keys[1]:
            raise ConnectionResetError("the object's stream broke off")

    monkeypatch.setattr(log, "read_blocks", read_blocks)
    assert gc.isenabled()
    assert usecases.aggregate(log, keys[0]).events == 40 + sum(
        e["type"] == "conversion" for e in log.events
    )
    assert gc.isenabled()
    with pytest.raises(ConnectionResetError):
        usecases.aggregate(log, keys[1])
    assert gc.isenabled()  # back on after a failure too
    gc.disable()
    try:
        usecases.aggregate(log, keys[2])
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
    assert during == [False, False, False]
