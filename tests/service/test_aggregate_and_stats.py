from __future__ import annotations

import json
import random

import pytest

from abtest.http.bodies import StatsResponse
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

    assert result.applied and result.rejected == []
    by_variant = {m.variant_name: m for m in stats.endpoint.variant_metrics}
    for variant in ("Champion1", "Challenger1"):
        invocations = [
            e for e in log.events if e["type"] == "invocation" and e["variant_name"] == variant
        ]
        conversions = [
            e for e in log.events if e["type"] == "conversion" and e["variant_name"] == variant
        ]
        assert by_variant[variant].invocation_count == len(invocations)
        assert by_variant[variant].conversion_count == len(conversions)
        assert by_variant[variant].reward_sum == pytest.approx(len(conversions))
    assert sum(stats.allocation.values()) == pytest.approx(1.0)


def test_redelivered_object_counts_once(usecases, log):
    simulate(usecases, random.Random(2), 30, {"Champion1": 0.5, "Challenger1": 0.5})
    key = log.deliver()

    first, second = usecases.aggregate(log, key), usecases.aggregate(log, key)

    assert (first.applied, second.applied) == (True, False)
    stats = usecases.stats(ENDPOINT)
    assert sum(m.invocation_count for m in stats.endpoint.variant_metrics) == 30


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
    assert {m.variant_name: m.invocation_count for m in stats.endpoint.variant_metrics} == {
        "Champion1": 2,
        "Challenger1": 0,
    }


def test_manual_and_fallback_invocations_are_logged_but_not_counted(usecases, log):
    usecases.invoke(
        Invocation(endpoint_name=ENDPOINT, user_id="m", data="x", endpoint_variant="Champion1")
    )
    key = log.deliver()

    result = usecases.aggregate(log, key)

    assert result.events == 1 and result.counts == {}


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

    from bandit.stats import users_to_significance

    champion, challenger = stats.endpoint.variant_metrics
    expected = users_to_significance(
        champion,
        challenger,
        (stats.allocation["Champion1"], stats.allocation["Challenger1"]),
        0.05,
    )
    assert stats.decision["reason"] == "no_clear_winner"
    assert expected is not None and expected > 0
    assert stats.decision["users_needed"] == expected
    assert stats.decision["advice"]
