"""bandit.estimates: IPW estimates, confidence sequences and the sample-ratio check, each
checked against a recomputation from per-trial data and by fixed-seed simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bandit import BINARY, CONTINUOUS, VariantMetrics
from bandit.estimates import (
    RHO_SQUARED,
    TIGHTEST_AT,
    Estimate,
    cs_radius,
    decision_estimates,
    difference,
    hajek,
    horvitz_thompson,
    mixture_p_value,
    pooled_spread,
    sample_ratio,
)
from bandit.stats import SAMPLE_RATIO_MISMATCH, WINNER, decision, verdict


def logged(names, arms, propensities, outcomes) -> tuple[VariantMetrics, ...]:
    """The counters the service keeps (unit "user") from a per-trial log."""
    out = []
    for k, name in enumerate(names):
        mine = arms == k
        p, y = propensities[mine], outcomes[mine]
        out.append(
            VariantMetrics(
                name,
                1.0,
                int(mine.sum()),
                int((y != 0).sum()),
                float(y.sum()),
                float((y * y).sum()),
                float((1 / p).sum()),
                float((1 / p**2).sum()),
                float((y / p).sum()),
                float((y / p**2).sum()),
                float((y * y / p**2).sum()),
            )
        )
    return tuple(out)


def adaptive_log(seed: int, trials: int, rates=(0.3, 0.3)):
    """Two variants; each trial's propensity depends on the outcomes so far (a greedy rule
    held above 0.1), so the raw means are biased and the weights matter."""
    rng = np.random.default_rng(seed)
    arms = np.empty(trials, dtype=int)
    props = np.empty(trials)
    ys = np.empty(trials)
    wins, counts = np.ones(2), np.full(2, 2.0)
    for t in range(trials):
        p1 = 0.9 if wins[1] / counts[1] > wins[0] / counts[0] else 0.1
        arm = int(rng.random() < p1)
        arms[t], props[t] = arm, p1 if arm else 1.0 - p1
        ys[t] = float(rng.random() < rates[arm])
        wins[arm] += ys[t]
        counts[arm] += 1
    return arms, props, ys


def test_hajek_and_horvitz_thompson_match_a_recomputation_from_the_trials():
    arms, props, ys = adaptive_log(1, 3000)
    ms = logged(("A", "B"), arms, props, ys)
    n = len(arms)
    for k, m in enumerate(ms):
        mine = arms == k
        w = np.where(mine, 1 / props, 0.0)
        mu = (w * ys).sum() / w.sum()
        influence = w * (ys - mu) / (w.sum() / n)  # the linearised per-trial terms
        est = hajek(m, n)
        assert est.value == pytest.approx(mu, rel=1e-12)
        assert est.variance == pytest.approx((influence**2).sum() / n**2, rel=1e-9)
        terms = w * ys
        ht = horvitz_thompson(m, n)
        assert ht.value == pytest.approx(terms.mean(), rel=1e-12)
        assert ht.variance == pytest.approx(terms.var() / n, rel=1e-9)
    d = difference(hajek(ms[1], n), hajek(ms[0], n))
    assert d.variance == pytest.approx(hajek(ms[0], n).variance + hajek(ms[1], n).variance)


def test_without_weights_there_is_no_weighted_estimate_and_no_sample_ratio_check():
    ms = (VariantMetrics("A", 1.0, 100, 5, 5.0), VariantMetrics("B", 1.0, 100, 9, 9.0))
    assert hajek(ms[0], 200) is None and horvitz_thompson(ms[0], 200) is None
    assert sample_ratio(ms) is None
    d = decision(ms)
    assert (d.estimator, d.sample_ratio) == ("raw", None)
    assert "sample-ratio check not run" in d.unit_note


@pytest.mark.parametrize("planned", [2_000, 40_000, 500_000])
def test_the_sequence_is_tightest_at_the_planned_sample_size(planned):
    # An endpoint planned for `planned` trials gets the boundary whose per-trial width is
    # least there (a numeric minimum over N), and the decision's p-value follows it.
    sigma2, step = 0.3, planned // 50
    widths = {
        n: cs_radius(sigma2 / n, n, 0.05, tightest_at=planned) * math.sqrt(n)
        for n in range(step, 3 * planned, step)
    }
    assert abs(min(widths, key=widths.get) - planned) <= 2 * step


def test_a_decision_planned_for_fewer_users_calls_a_clear_winner_sooner():
    # A demo run's counters after 2,000 users: 0.74 against 0.86, top-two's split
    champion = VariantMetrics("A", 1.0, 307, 225, 225.0, 225.0, 2048.77, 17363.90, 1522.46,
                              12961.22, 12961.22)  # fmt: skip
    challenger = VariantMetrics("B", 1.0, 1693, 1455, 1455.0, 1455.0, 2018.71, 2504.31,
                                1742.18, 2174.91, 2174.91)  # fmt: skip
    planned = decision([champion, challenger], tightest_at=2_000)
    default = decision([champion, challenger])
    # THEN planned for its 2,000 users it calls the clear winner; planned for 40,000, the
    # same evidence is not yet enough at this size
    assert (planned.winner, default.winner) == ("B", None)
    assert planned.variants[1].always_valid_p_value < default.variants[1].always_valid_p_value


def test_confidence_sequence_is_the_gaussian_mixture_boundary_and_dual_to_the_p_value():
    alpha = 0.05
    # rho² makes the boundary tightest at TIGHTEST_AT trials: a numeric minimum of the
    # radius over N at a fixed per-trial variance.
    sigma2 = 0.3
    widths = {n: cs_radius(sigma2 / n, n, alpha) * math.sqrt(n) for n in range(5000, 80000, 1000)}
    assert abs(min(widths, key=widths.get) - TIGHTEST_AT) <= 2000
    # The formula of Waudby-Smith et al., written out independently.
    n, variance = 5000, 2e-5
    s = math.sqrt(n * variance)
    rho2 = RHO_SQUARED
    expected = s * math.sqrt(
        2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha)
    )
    assert cs_radius(variance, n, alpha) == pytest.approx(expected, rel=1e-12)
    for value in (0.001, 0.01, 0.0158, 0.02, 0.05):
        est = Estimate(value, variance, n)
        lower, _ = est.interval(alpha)
        assert (est.p_value() <= alpha) == (lower > 0.0)
        assert mixture_p_value(value, variance, n) == est.p_value()


@pytest.mark.slow
def test_the_sequence_covers_at_every_look_and_an_a_a_test_stays_valid_under_peeking():
    """Fixed seeds, 200 adaptive runs of 2,000 trials, a look every 200: the Hajek difference's
    95 % sequence holds the truth (0) at every look in >= 95 % of runs, within 3 binomial se
    (so the gate that tests 0 with it calls a false winner in <= 5 %)."""
    runs, misses = 200, 0
    for seed in range(runs):
        arms, props, ys = adaptive_log(100 + seed, 2000, rates=(0.3, 0.3))
        for t in range(200, 2001, 200):
            ms = logged(("A", "B"), arms[:t], props[:t], ys[:t])
            d = difference(hajek(ms[1], t), hajek(ms[0], t))
            if d is not None and d.p_value() <= 0.05:
                misses += 1
                break
    rate = misses / runs
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs), rate


def test_raw_means_are_biased_where_the_weighted_estimate_is_not():
    """The adaptive rule starves a variant while it is unlucky, so its raw mean comes out
    low: over 300 fixed-seed runs the raw mean is off by many Monte Carlo se, Hajek's within 3."""
    raw_errors, weighted_errors = [], []
    for seed in range(300):
        arms, props, ys = adaptive_log(1000 + seed, 300, rates=(0.3, 0.3))
        ms = logged(("A", "B"), arms, props, ys)
        raw_errors.append(ys[arms == 0].mean() - 0.3)
        weighted_errors.append(hajek(ms[0], 300).value - 0.3)
    for errors, biased in ((raw_errors, True), (weighted_errors, False)):
        z = np.mean(errors) / (np.std(errors, ddof=1) / math.sqrt(len(errors)))
        assert (abs(z) > 3) == biased, z


def srm_log(seed: int, drop: float):
    """A 30/70 split of 20,000 users at rate 0.1; `drop` of B's assignments never logged."""
    rng = np.random.default_rng(seed)
    n = 20_000
    arms = (rng.random(n) < 0.7).astype(int)
    props = np.where(arms == 1, 0.7, 0.3)
    ys = (rng.random(n) < 0.1).astype(float)
    keep = ~((arms == 1) & (rng.random(n) < drop))
    return arms[keep], props[keep], ys[keep]


def test_sample_ratio_mismatch_is_flagged_on_a_corrupted_log_and_not_on_a_clean_one():
    clean = logged(("A", "B"), *srm_log(5, 0.0))
    check = sample_ratio(clean)
    assert not check.mismatch and check.expected == sum(m.invocation_count for m in clean)
    corrupted = logged(("A", "B"), *srm_log(5, 0.10))
    check = sample_ratio(corrupted)
    assert check.mismatch and min(check.p_values.values()) <= 0.001 / 2
    assert verdict(corrupted, min_samples=0) == (None, SAMPLE_RATIO_MISMATCH)
    d = decision(corrupted)
    assert d.reason == SAMPLE_RATIO_MISMATCH and d.winner is None
    assert "sample-ratio mismatch" in d.advice and d.sample_ratio["mismatch"] is True


def test_clean_logs_are_rarely_flagged():
    flagged = sum(sample_ratio(logged(("A", "B"), *srm_log(s, 0.0))).mismatch for s in range(40))
    assert flagged == 0  # P(any of 40) <= 40 * 0.001


def test_a_weighted_decision_calls_a_clear_winner_and_reports_the_new_keys():
    rng = np.random.default_rng(3)
    n = 20_000
    arms = (rng.random(n) < 0.5).astype(int)
    ys = (rng.random(n) < np.where(arms == 1, 0.15, 0.10)).astype(float)
    ms = logged(("A", "B"), arms, np.full(n, 0.5), ys)
    d = decision(ms)
    assert (d.winner, d.reason, d.estimator) == ("B", WINNER, "hajek")
    out = json.loads(json.dumps(d.as_dict(), allow_nan=False))
    assert out["sample_ratio"]["mismatch"] is False and out["difference_alpha"] == 0.05
    champion, challenger = out["variants"]
    assert champion["difference_interval"] is None and champion["difference_estimate"] is None
    lower, upper = challenger["difference_interval"]
    assert 0 < lower < challenger["difference_estimate"] < upper
    assert challenger["estimate_interval"][0] < challenger["estimate"]
    assert challenger["horvitz_thompson_estimate"] == pytest.approx(
        (ys * (arms == 1) / 0.5).sum() / n
    )


def test_continuous_weighted_variances_are_at_least_the_pooled_spread():
    """A starved variant without a large draw yet must not claim a small variance."""
    quiet = VariantMetrics("A", 1.0, 100, 5, 10.0, 20.0, 1000.0, 10000.0, 100.0, 1000.0, 200.0)
    loud = VariantMetrics("B", 1.0, 900, 45, 900.0, 90000.0, 1000.0, 1111.0, 900.0, 1000.0, 1e5)
    spread = pooled_spread((quiet, loud))
    assert spread == pytest.approx(90020.0 / 1000 - (910.0 / 1000) ** 2)
    _, n, continuous = decision_estimates((quiet, loud), CONTINUOUS)
    _, _, binary = decision_estimates((quiet, loud), BINARY)
    assert binary["A"].variance == hajek(quiet, n).variance
    assert continuous["A"].variance == pytest.approx(spread * 10000.0 / 1000.0**2)
    assert continuous["A"].variance > binary["A"].variance
    assert continuous["B"].value == binary["B"].value == hajek(loud, n).value


def test_binary_intervals_stay_within_what_a_rate_can_be():
    # GIVEN 40 users per variant, 38 converting on B: the asymptotic sequence of B's rate
    # reaches past 1 this early
    a = VariantMetrics("A", 1.0, 40, 2, 2.0, 2.0, 80.0, 160.0, 4.0, 8.0, 8.0)
    b = VariantMetrics("B", 1.0, 40, 38, 38.0, 38.0, 80.0, 160.0, 76.0, 152.0, 152.0)
    uncut = hajek(b, 80).interval(0.05)
    assert uncut[1] > 1.0

    d = decision([a, b])

    # THEN what /stats shows is cut to [0, 1] for a rate and [-1, 1] for a difference,
    # and the estimates themselves are unchanged
    shown = {v.variant_name: v for v in d.variants}
    assert shown["B"].estimate_interval == (uncut[0], 1.0)
    assert shown["A"].estimate_interval[0] >= 0.0
    assert -1.0 <= shown["B"].difference_interval[0] <= shown["B"].difference_interval[1] <= 1.0
    assert shown["B"].estimate == pytest.approx(0.95)
    # Continuous rewards have no such range: nothing is cut
    revenue = decision([a, b], reward=CONTINUOUS)
    assert {v.variant_name: v for v in revenue.variants}["B"].estimate_interval[1] >= 1.0
