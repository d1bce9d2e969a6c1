"""The regex fast path counts what the json.loads path counts, and nothing it would reject."""

from __future__ import annotations

import json
import random

import pytest

from abtest.aggregation import _Tally, count_events
from abtest.events import conversion_event, encode, invocation_event
from abtest.records import COUNTERS, Endpoint, RejectedLine, VariantCounters, VariantCounts

ENDPOINTS = {
    name: Endpoint(
        name, "UCB1", {}, 0, (VariantCounters("Champion1"), VariantCounters("Challenger1"))
    )
    for name in ("reviews-dev", "reviews-prod")
}


def _kept_nowhere(line: RejectedLine) -> None:
    """Where the tallies below keep rejected lines: they check only how many there were."""


def events(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _i in range(n):
        fields = {
            "now": 1_795_000_000 + rng.random() * 1e5,
            "endpoint_name": rng.choice(list(ENDPOINTS)),
            "variant_name": rng.choice(["Champion1", "Challenger1"]),
            "user_id": f"user-{rng.randrange(1000)}",
            "inference_id": f"{rng.getrandbits(64):016x}",
            "strategy": rng.choice(["ThompsonSampling", "WeightedSampling", "Manual"]),
        }
        if rng.random() < 0.3:
            reward = rng.choice([1.0, 0.0, 0.25, 1e-3, 1])
            assigned = {
                "assigned_at": fields["now"] - rng.choice([0, 1e3, 1e7]),
                "propensity": rng.choice([None, rng.random(), 1.0, 1e-05]),
                "late": rng.random() < 0.2,
            }
            out.append(conversion_event(**fields, reward=reward, **assigned))
        else:
            assignment = rng.choice(["new", "existing", "manual", "fallback"])
            propensity = rng.choice([None, rng.random(), 1.0, 1e-05])
            # Some logged before calls carried their latency and outcome, some after.
            timed = {}
            if rng.random() < 0.7:
                timed = {
                    "latency_ms": rng.choice([0, 0.4, 1, 3.5, 120, 999.9, 1000, 7e4]),
                    "outcome": rng.choice(["ok", "ok", "error"]),
                }
            out.append(
                invocation_event(**fields, propensity=propensity, assignment=assignment, **timed)
            )
    return out


def totals(tally: _Tally) -> dict:
    """(endpoint, variant) -> [invocations, conversions, reward], each conversion key once."""
    out: dict = {}
    for endpoint, variants in tally.counts.items():
        for variant, c in variants.items():
            row = out.setdefault((endpoint, variant), [0, 0, 0.0])
            row[0] += c.invocation_count
            row[1] += c.conversion_count
            row[2] += c.reward_sum
    seen = set()
    for line, _times in tally.keyed:
        if line.key not in seen:
            seen.add(line.key)
            row = out.setdefault((line.endpoint_name, line.variant_name), [0, 0, 0.0])
            row[1] += line.delta.conversion_count
            row[2] += line.delta.reward_sum
    return out


def slow_only(block: bytes):
    tally = _Tally(ENDPOINTS.get, _kept_nowhere)
    tally.slow(block, 1)
    return tally


@pytest.mark.parametrize("seed", range(5))
def test_the_fast_path_takes_our_own_events_and_agrees_with_json_loads(seed):
    block = b"".join(encode(event) for event in events(seed, 500))

    fast = _Tally(ENDPOINTS.get, _kept_nowhere)
    assert fast.fast(block, block.count(b"\n"))
    slow = slow_only(block)

    assert fast.events == slow.events == 500
    assert slow.rejected == 0
    mine, theirs = totals(fast), totals(slow)
    assert mine.keys() == theirs.keys()
    for where, (invocations, conversions, reward) in theirs.items():
        assert mine[where][:2] == [invocations, conversions]
        assert mine[where][2] == pytest.approx(reward)
    assert set(fast.keyed) == set(slow.keyed)
    # Every counter, the users and their weights too; sums of floats to their rounding,
    # since the fast path adds them in another order (grouped by shape).
    assert every_counter(fast) == every_counter(slow)


def every_counter(tally: _Tally) -> dict:
    return {
        (endpoint, variant, counter.name): (
            pytest.approx(getattr(counts, counter.name), rel=1e-12)
            if counter.type is float
            else getattr(counts, counter.name)
        )
        for endpoint, variants in tally.counts.items()
        for variant, counts in variants.items()
        for counter in COUNTERS
    }


def test_a_conversion_logged_twice_is_kept_once_on_both_paths():
    conversion = next(e for e in events(5, 50) if e["type"] == "conversion" and not e["late"])
    block = encode(conversion) * 2

    fast = _Tally(ENDPOINTS.get, _kept_nowhere)
    assert fast.fast(block, 2)
    slow = slow_only(block)

    for tally in (fast, slow):
        assert tally.events == 2
        assert len({line.key for line, _times in tally.keyed}) == 1
        assert totals(tally)[(conversion["endpoint_name"], conversion["variant_name"])][1] == 1


BAD = [
    ("reward above one", lambda e: {**e, "type": "conversion", "reward": 1.5}),
    ("unknown variant", lambda e: {**e, "variant_name": "Ghost"}),
    ("unknown endpoint", lambda e: {**e, "endpoint_name": "elsewhere"}),
    ("unknown type", lambda e: {**e, "type": "click"}),
]


@pytest.mark.parametrize(("name", "spoil"), BAD, ids=[name for name, _ in BAD])
def test_a_well_shaped_but_invalid_line_is_rejected_with_its_number(name, spoil):
    good = events(1, 9)
    good = [e for e in good if e["type"] == "invocation"][:5]
    lines = [encode(e) for e in good]
    spoiled = spoil(good[2])
    if spoiled["type"] == "conversion":
        spoiled = {k: v for k, v in spoiled.items() if k not in ("propensity", "assignment")}
    lines[2] = encode(spoiled)

    kept: list[RejectedLine] = []
    tally = count_events([b"".join(lines)], ENDPOINTS.get, kept.append)

    assert tally.events == 4
    assert [r.line_number for r in kept] == [3]
    assert (tally.rejected, tally.first_rejected) == (1, kept[0])
    assert sum(c.invocation_count for v in tally.counts.values() for c in v.values()) <= 4


def test_broken_json_in_a_block_is_rejected_alone_and_blank_lines_are_numbered():
    good = [encode(e) for e in events(2, 4)]
    block = good[0] + b"\n" + b'{"type":"invocation","endpoint_name":' + b"\n" + b"".join(good[1:])

    kept: list[RejectedLine] = []
    tally = count_events([block], ENDPOINTS.get, kept.append)

    assert tally.events == 4
    assert [(r.line_number, r.reason.split(":")[0]) for r in kept] == [(3, "not JSON")]


def test_lines_in_another_key_order_or_with_escapes_still_count():
    event = events(3, 1)[0]
    reordered = json.dumps(dict(reversed(list(event.items())))).encode() + b"\n"
    escaped = encode({**event, "user_id": 'Zoë "quoted"'})

    tally = count_events([reordered + escaped], ENDPOINTS.get, _kept_nowhere)

    assert (tally.events, tally.rejected) == (2, 0)


def test_escaped_strings_stay_on_the_fast_path_and_key_the_conversion_as_written():
    event = next(e for e in events(4, 50) if e["type"] == "conversion")
    block = encode({**event, "user_id": 'Zoë "quoted" \\ tab\t'})

    tally = _Tally(ENDPOINTS.get, _kept_nowhere)

    assert tally.fast(block, 1)
    assert tally.events == 1
    assert tally.keyed[0][0].key.user_id == 'Zoë "quoted" \\ tab\t'


def test_the_fast_path_makes_records_per_variant_and_shape_never_per_line(monkeypatch):
    # Each new user's line has its own propensity and latency, each conversion its own ids:
    # a record (31 counters) made per such line once made aggregation five times slower,
    # and only a benchmark saw it. Lines are counted in C; records per variant and shape.
    made: list[int] = []
    make = VariantCounts.__init__

    def counted(self, *args, **kwargs) -> None:
        made.append(1)
        make(self, *args, **kwargs)

    rng = random.Random(7)
    lines = []
    for n in range(5_000):
        fields = {
            "now": 1_795_000_000 + n,
            "endpoint_name": "reviews-dev",
            "variant_name": rng.choice(["Champion1", "Challenger1"]),
            "user_id": f"user-{n}",
            "inference_id": f"{rng.getrandbits(64):016x}",
            "strategy": "ThompsonSampling",
        }
        if n % 5 == 4:
            # A conversion carries its assignment's propensity: one of the few allocations
            # the object's minute saw.
            lines.append(
                conversion_event(
                    **fields, reward=1.0, assigned_at=n - 60.0, propensity=0.25, late=False
                )
            )
        else:
            lines.append(
                invocation_event(
                    **fields,
                    propensity=round(rng.uniform(0.01, 1.0), 6),
                    assignment="new",
                    latency_ms=round(rng.lognormvariate(3.0, 0.8), 1),
                    outcome="ok",
                )
            )
    block = b"".join(map(encode, lines))
    monkeypatch.setattr(VariantCounts, "__init__", counted)

    tally = count_events([block], ENDPOINTS.get, _kept_nowhere)
    counts = tally.counts["reviews-dev"]

    assert (tally.events, tally.rejected, len(tally.keyed)) == (5_000, 0, 1_000)
    assert sum(c.users for c in counts.values()) == 4_000
    assert len(made) <= 10, f"{len(made)} records made for 5,000 lines"
