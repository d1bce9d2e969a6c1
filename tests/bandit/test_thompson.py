"""Thompson allocation = probability of being best, exact (vs scipy), cached, and sampled right."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import integrate, stats

import bandit.posterior
from bandit import ThompsonSampling, VariantMetrics
from bandit.posterior import beta_parameters
from tests.bandit.helpers import assert_frequencies_match, metrics


def oracle_probability_best(params: list[tuple[float, float]]) -> list[float]:
    """P(i best) = ∫ f_i Π_{j≠i} F_j with scipy's Beta pdf/cdf, Simpson on 20,001 points
    spanning arm i's whole support (fine enough for the narrowest posterior here)."""
    dists = [stats.beta(a, b) for a, b in params]
    out = []
    for i, dist in enumerate(dists):
        x = np.linspace(dist.ppf(1e-13), dist.isf(1e-13), 20_001)
        integrand = dist.pdf(x)
        for j, other in enumerate(dists):
            if j != i:
                integrand = integrand * other.cdf(x)
        out.append(float(integrate.simpson(integrand, x=x)))
    return out


CASES = {
    "two fresh": metrics(("A", 0, 0), ("B", 0, 0)),
    "two early": metrics(("A", 100, 5), ("B", 100, 6)),
    "three close": metrics(("A", 1000, 100), ("B", 1000, 120), ("C", 1000, 110)),
    "wide vs narrow": metrics(("A", 1, 0), ("B", 1_000_000, 50_000)),
    "far apart": metrics(("A", 500, 400), ("B", 500, 10)),
    "skewed": metrics(("A", 100_000, 0), ("B", 30, 0)),
    # The most extreme table found (150 random ones tried): 4.4e-4 off, the others 6e-5 at most.
    "every trial converted": metrics(("A", 5, 5), ("B", 100_000, 100_000)),
    "ten arms": metrics(*[(f"v{i}", 500 + 37 * i, 20 + 3 * i) for i in range(10)]),
    "fractional rewards": (
        VariantMetrics("A", 1.0, 40, 10, 7.5),
        VariantMetrics("B", 1.0, 44, 9, 8.25),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_allocation_matches_scipy_quadrature_within_5e_4(case):
    # The bound the docstrings give (ThompsonSampling, bandit.stats.probability_best).
    ms = CASES[case]
    ours = ThompsonSampling(floor=0.0).allocation(ms)
    expected = oracle_probability_best([beta_parameters(m) for m in ms])
    for m, p in zip(ms, expected, strict=True):
        assert ours[m.variant_name] == pytest.approx(p, abs=5e-4)


def test_posterior_is_beta_one_plus_successes_one_plus_failures():
    assert beta_parameters(VariantMetrics("A", 1.0, 10, 3, 3.0)) == (4.0, 8.0)
    assert beta_parameters(VariantMetrics("A", 1.0, 10, 3, 25.0)) == (11.0, 1.0)  # clipped
    assert beta_parameters(VariantMetrics("A")) == (1.0, 1.0)


def test_better_posterior_gets_more_traffic():
    alloc = ThompsonSampling(floor=0.0).allocation(metrics(("A", 200, 10), ("B", 200, 30)))
    assert alloc["B"] > 0.99


@pytest.mark.parametrize("case", ["two early", "three close", "ten arms"])
def test_sample_is_distributed_as_the_allocation(case):
    strategy = ThompsonSampling(floor=0.0)
    ms = CASES[case]
    assert_frequencies_match(lambda rng: strategy.sample(ms, rng), strategy.allocation(ms))


def test_allocation_is_computed_once_per_distinct_metrics(monkeypatch):
    calls = []
    real = bandit.posterior.best_arm_probabilities

    def counting(params):
        calls.append(params)
        return real(params)

    monkeypatch.setattr(bandit.posterior, "best_arm_probabilities", counting)
    strategy = ThompsonSampling(floor=0.0)
    ms = metrics(("A", 100, 5), ("B", 100, 6))
    r = random.Random(0)
    for _ in range(100):
        strategy.choose(ms, r)
    strategy.allocation(ms)
    strategy.choose(list(ms), r)  # equal metrics in another container: still cached
    strategy.choose(metrics(("A", 100, 5), ("B", 100, 6)), r)
    assert len(calls) == 1
    changed = metrics(("A", 101, 5), ("B", 100, 6))
    strategy.choose(changed, r)
    assert len(calls) == 2
    strategy.choose(ms, r)  # an earlier state is still in the cache
    assert len(calls) == 2


def test_a_mutated_list_is_not_served_from_a_stale_cache():
    strategy = ThompsonSampling(floor=0.0)
    ms = list(metrics(("A", 100, 30), ("B", 100, 60)))
    assert strategy.allocation(ms)["B"] > 0.99
    ms[1] = VariantMetrics("B", 1.0, 100, 0, 0.0)
    assert strategy.allocation(ms)["A"] > 0.99
    assert strategy.choose(ms, random.Random(0)) in {"A", "B"}
