"""Continuous rewards: the Normal-Inverse-Gamma posterior, Thompson allocation against Monte
Carlo, every strategy, and the decision."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from bandit import CONTINUOUS, STRATEGY_NAMES, ThompsonSampling, VariantMetrics, get_strategy
from bandit.posterior import student_t_parameters
from bandit.special import student_t_cdf, student_t_ppf
from bandit.stats import WINNER, decision, posteriors, probability_best


def revenue(name: str, outcomes: np.ndarray) -> VariantMetrics:
    """Counters of a variant whose trials had these outcomes (0 = no conversion)."""
    return VariantMetrics(
        name,
        1.0,
        len(outcomes),
        int((outcomes != 0).sum()),
        float(outcomes.sum()),
        float((outcomes**2).sum()),
    )


def sample(seed: int, rates_and_means, n: int) -> tuple[VariantMetrics, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for i, (rate, mean) in enumerate(rates_and_means):
        converted = rng.random(n) < rate
        out.append(revenue(f"V{i}", converted * rng.lognormal(math.log(mean) - 0.5, 1.0, n)))
    return tuple(out)


MS = sample(1, [(0.10, 10.0), (0.11, 10.0), (0.10, 11.5)], 800)


@pytest.mark.parametrize("dof", [1.5, 3.0, 30.0, 800.0])
def test_student_t_cdf_and_ppf_match_scipy(dof):
    for x in (-40.0, -3.0, -0.2, 0.0, 0.7, 5.0):
        assert student_t_cdf(x, dof) == pytest.approx(stats.t.cdf(x, dof), abs=1e-12)
    for q in (0.001, 0.025, 0.5, 0.975):
        assert student_t_ppf(q, dof) == pytest.approx(stats.t.ppf(q, dof), rel=1e-9, abs=1e-12)


def test_posterior_is_the_normal_inverse_gamma_update_with_the_pooled_prior():
    """Recomputed from Murphy (2007) eqs. 86-89 with k0 = 1, a0 = 1, m0 and b0 pooled."""
    n = np.array([m.invocation_count for m in MS], dtype=float)
    s = np.array([m.reward_sum for m in MS])
    q = np.array([m.reward_sq_sum for m in MS])
    m0 = s.sum() / n.sum()
    b0 = q.sum() / n.sum() - m0**2
    xbar = s / n
    kn, an = 1 + n, 1 + n / 2
    mn = (m0 + n * xbar) / kn
    bn = b0 + 0.5 * (q - n * xbar**2) + n * (xbar - m0) ** 2 / (2 * kn)
    for (loc, scale, dof), *expected in zip(
        student_t_parameters(MS), mn, np.sqrt(bn / (an * kn)), 2 * an, strict=True
    ):
        assert (loc, scale, dof) == pytest.approx(tuple(expected), rel=1e-10)


def test_thompson_allocation_matches_monte_carlo_draws_of_the_posterior():
    draws = 200_000
    rng = np.random.default_rng(7)
    params = student_t_parameters(MS)
    sampled = np.stack([loc + scale * rng.standard_t(dof, draws) for loc, scale, dof in params])
    frequency = np.bincount(sampled.argmax(axis=0), minlength=len(MS)) / draws
    allocation = ThompsonSampling(floor=0.0, reward=CONTINUOUS).allocation(MS)
    for (name, p), f in zip(allocation.items(), frequency, strict=True):
        assert abs(p - f) <= 4 * math.sqrt(p * (1 - p) / draws), (name, p, f)
    assert probability_best(MS, reward=CONTINUOUS).probability == pytest.approx(allocation)


def test_thompson_sample_is_distributed_as_the_continuous_allocation():
    strategy = ThompsonSampling(floor=0.0, reward=CONTINUOUS)
    allocation = strategy.allocation(MS)
    rng, picks = random.Random(3), 20_000
    counts = {name: 0 for name in allocation}
    for _ in range(picks):
        counts[strategy.sample(MS, rng)] += 1
    for name, p in allocation.items():
        assert abs(counts[name] / picks - p) <= 4 * math.sqrt(p * (1 - p) / picks)


def scaled(ms, factor):
    return tuple(
        VariantMetrics(
            m.variant_name,
            1.0,
            m.invocation_count,
            m.conversion_count,
            m.reward_sum * factor,
            m.reward_sq_sum * factor**2,
        )
        for m in ms
    )


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_allocates_continuous_rewards_the_same_in_any_currency(name):
    """Revenue in cents or dollars, or as a loss (negative), gives one allocation."""
    strategy = get_strategy(name, reward=CONTINUOUS)
    allocation = strategy.allocation(MS)
    assert sum(allocation.values()) == pytest.approx(1.0)
    assert get_strategy(name, reward=CONTINUOUS).allocation(scaled(MS, 100.0)) == pytest.approx(
        allocation, abs=1e-6
    )
    negative = get_strategy(name, reward=CONTINUOUS).allocation(scaled(MS, -1.0))
    assert sum(negative.values()) == pytest.approx(1.0)


def test_an_unknown_reward_kind_is_rejected():
    with pytest.raises(ValueError, match="reward must be one of binary, continuous"):
        get_strategy("ThompsonSampling", reward="revenue")


def test_a_continuous_decision_calls_the_better_variant_and_reports_t_intervals():
    ms = sample(2, [(0.10, 10.0), (0.10, 14.0)], 20_000)
    d = decision(ms, reward=CONTINUOUS)
    assert (d.winner, d.reason, d.reward, d.estimator) == ("V1", WINNER, CONTINUOUS, "raw")
    champion, challenger = d.variants
    assert champion.difference_interval is None
    lower, upper = challenger.difference_interval
    assert 0 < lower < challenger.difference_estimate < upper
    post = posteriors(ms, reward=CONTINUOUS)[1]
    assert post.lower < ms[1].reward_sum / ms[1].invocation_count < post.upper
    assert challenger.credible_interval == (post.lower, post.upper)


def test_a_continuous_a_a_test_calls_no_winner():
    ms = sample(4, [(0.10, 10.0), (0.10, 10.0)], 20_000)
    assert decision(ms, reward=CONTINUOUS).winner is None
