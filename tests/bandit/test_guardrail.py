"""The guardrails' always-valid test: its closed form, its level under repeated looks, its
power, and the lower bound it reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from bandit.guardrail import exceeds, log_evidence, lower_bound


@pytest.mark.parametrize(
    ("events", "trials", "limit"), [(1, 1, 0.01), (3, 40, 0.05), (20, 100, 0.05), (0, 9, 0.2)]
)
def test_the_closed_form_is_the_mixture_integral(events, trials, limit):
    def integrand(q: float) -> float:
        ratio = (q / limit) ** events * ((1 - q) / (1 - limit)) ** (trials - events)
        return ratio / (1 - limit)

    value, _ = integrate.quad(integrand, limit, 1.0, epsabs=1e-13, epsrel=1e-10)
    if events == 0:
        assert log_evidence(events, trials, limit) == -math.inf  # no event: no evidence
    else:
        assert log_evidence(events, trials, limit) == pytest.approx(math.log(value), rel=1e-8)


@pytest.mark.slow(seconds=5)
def test_a_rate_at_the_limit_is_flagged_at_most_alpha_of_the_time_however_often_looked_at():
    """Ville's inequality: the chance of ever crossing 1/alpha is at most alpha. At alpha 5 %
    (the test takes any level; the guardrails use 0.1 %), 1,000 runs at the limit looked at
    after every 10 trials up to 2,000. Tolerance: alpha plus three binomial standard errors
    of 1,000 runs, sqrt(0.05 * 0.95 / 1000) = 0.0069 each; a fixed-sample test looked at
    this often would cross far more often."""
    rng = np.random.default_rng(7)
    limit, alpha, runs = 0.05, 0.05, 1000
    flagged = 0
    for _ in range(runs):
        events = np.cumsum(rng.random(2000) < limit)
        if any(exceeds(int(events[n - 1]), n, limit, alpha) for n in range(10, 2001, 10)):
            flagged += 1
    assert flagged / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_a_variant_failing_20_percent_against_5_percent_is_flagged_within_300_calls():
    """Power at the guardrails' 0.1 %: the test needs 17 failures in 100 calls, 27 in 200,
    35 in 300 (the evidence grows by KL(0.2 || 0.05) = 0.14 nats a call, past ln 1000 = 6.9
    near 70 calls). A run of 300 calls at 20 % has fewer than 35 with probability 4.6e-5
    (the binomial tail), so all 200 seeded runs must be flagged."""
    assert [exceeds(k, 100, 0.05) for k in (16, 17)] == [False, True]
    rng = np.random.default_rng(11)
    for _ in range(200):
        failures = int((rng.random(300) < 0.2).sum())
        assert exceeds(failures, 300, 0.05)


def test_one_or_two_bad_calls_out_of_few_are_no_evidence_of_a_5_percent_breach():
    assert not exceeds(1, 1, 0.05)
    assert not exceeds(1, 10, 0.05)


@pytest.mark.parametrize(("events", "trials"), [(20, 100), (300, 1000), (5, 20)])
def test_the_lower_bound_is_where_the_test_stops_rejecting(events, trials):
    bound = lower_bound(events, trials)
    assert 0.0 < bound < events / trials
    assert exceeds(events, trials, bound - 2e-4)
    assert not exceeds(events, trials, bound + 2e-4)
