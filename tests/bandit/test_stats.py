"""bandit.stats: posterior summaries, probability of being best, tests, and the decision."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from scipy import integrate, stats

from bandit import ThompsonSampling, VariantMetrics
from bandit.stats import (
    NO_CLEAR_WINNER,
    REASONS,
    SINGLE_VARIANT,
    TOO_FEW_SAMPLES,
    WINNER,
    decision,
    msprt_p_value,
    posterior,
    probability_best,
    two_proportion_z_test,
    verdict,
)
from tests.bandit.helpers import metrics


def test_posterior_mean_and_95_credible_interval_match_scipy():
    m = VariantMetrics("A", 1.0, 400, 37, 37.0)
    post = posterior(m)
    assert post.mean == pytest.approx(38 / 402)
    assert post.lower == pytest.approx(stats.beta.ppf(0.025, 38, 364), rel=1e-9)
    assert post.upper == pytest.approx(stats.beta.ppf(0.975, 38, 364), rel=1e-9)


def test_posterior_without_invocations_is_the_uniform_prior():
    post = posterior(VariantMetrics("A"))
    assert (post.mean, post.lower, post.upper) == pytest.approx((0.5, 0.025, 0.975))


MS = metrics(("A", 300, 30), ("B", 280, 36), ("C", 310, 33))


def test_probability_best_is_the_thompson_allocation():
    assert probability_best(MS).probability == pytest.approx(
        ThompsonSampling(floor=0.0).allocation(MS), abs=1e-12
    )
    assert set(probability_best(MS).standard_error.values()) == {0.0}


def test_monte_carlo_probability_best_agrees_within_its_standard_error():
    draws = 20_000
    exact = probability_best(MS).probability
    sampled = probability_best(MS, draws=draws, rng=random.Random(11))
    for name, p in exact.items():
        q = sampled.probability[name]
        assert sampled.standard_error[name] == pytest.approx(math.sqrt(q * (1 - q) / draws))
        assert abs(sampled.probability[name] - p) <= 4 * math.sqrt(p * (1 - p) / draws)


def test_expected_loss_matches_scipy():
    # E[max] = ∫_0^1 (1 - Π F_j(x)) dx; loss_i = E[max] - E[p_i].
    params = [(31, 271), (37, 245), (34, 278)]
    x = np.linspace(0.0, 1.0, 200_001)
    product = np.prod([stats.beta(a, b).cdf(x) for a, b in params], axis=0)
    expected_max = 1.0 - integrate.simpson(product, x=x)
    loss = probability_best(MS).expected_loss
    for (a, b), name in zip(params, "ABC", strict=True):
        assert loss[name] == pytest.approx(expected_max - a / (a + b), abs=1e-5)
    assert min(loss.values()) > 0.0


def test_z_test_matches_the_chi_square_test_of_the_two_by_two_table():
    champion, challenger = (
        VariantMetrics("A", 1.0, 1000, 100, 100.0),
        VariantMetrics("B", 1.0, 900, 117, 117.0),
    )
    result = two_proportion_z_test(champion, challenger)
    chi2, p_two_sided, _, _ = stats.chi2_contingency([[100, 900], [117, 783]], correction=False)
    assert result.z**2 == pytest.approx(chi2, rel=1e-9)
    assert result.z > 0
    assert result.p_value == pytest.approx(p_two_sided / 2, rel=1e-9)


def test_z_test_is_one_sided_in_the_challengers_favour():
    worse = two_proportion_z_test(
        VariantMetrics("A", 1.0, 1000, 120, 120.0), VariantMetrics("B", 1.0, 1000, 100, 100.0)
    )
    assert worse.z < 0
    assert worse.p_value > 0.5


def test_z_test_edge_cases():
    assert two_proportion_z_test(VariantMetrics("A"), VariantMetrics("B", 1.0, 5, 1, 1.0)) is None
    same = two_proportion_z_test(VariantMetrics("A", 1.0, 50), VariantMetrics("B", 1.0, 70))
    assert (same.z, same.p_value) == (0.0, 0.5)


def test_msprt_reduces_to_the_paired_formula_for_equal_sample_sizes():
    # Johari et al.: Lambda_n = sqrt(V / (V + n tau²)) exp(n² tau² d² / (2 V (V + n tau²))).
    n, tau2 = 2000, 0.0004
    champion, challenger = (
        VariantMetrics("A", 1.0, n, 200, 200.0),
        VariantMetrics("B", 1.0, n, 250, 250.0),
    )
    m1, m2 = 201 / 2002, 251 / 2002
    variance = m1 * (1 - m1) + m2 * (1 - m2)
    d = 0.025
    lam = math.sqrt(variance / (variance + n * tau2)) * math.exp(
        n * n * tau2 * d * d / (2 * variance * (variance + n * tau2))
    )
    assert msprt_p_value(champion, challenger, tau2) == pytest.approx(1 / lam, rel=1e-9)


def test_msprt_edge_cases():
    a = VariantMetrics("A", 1.0, 500, 50, 50.0)
    assert msprt_p_value(a, VariantMetrics("B", 1.0, 500, 50, 50.0)) == 1.0
    assert msprt_p_value(a, VariantMetrics("B")) is None
    with pytest.raises(ValueError, match="mixing_variance"):
        msprt_p_value(a, a, mixing_variance=0.0)


def _peeking_rejections(p_a: float, p_b: float, experiments: int, seed: int):
    """Fraction of experiments rejected at alpha = 0.05 at ANY of 50 looks (every 100 users
    per arm): by the mSPRT p-value, and by the naive two-sided z-test."""
    rng = np.random.default_rng(seed)
    looks = np.arange(100, 5001, 100)
    msprt_hits = naive_hits = 0
    for _ in range(experiments):
        conv_a = np.cumsum(rng.random(5000) < p_a)[looks - 1]
        conv_b = np.cumsum(rng.random(5000) < p_b)[looks - 1]
        msprt = naive = False
        for n, ca, cb in zip(looks, conv_a, conv_b, strict=True):
            a = VariantMetrics("A", 1.0, int(n), int(ca), float(ca))
            b = VariantMetrics("B", 1.0, int(n), int(cb), float(cb))
            msprt = msprt or msprt_p_value(a, b) <= 0.05
            z = two_proportion_z_test(a, b).z
            naive = naive or math.erfc(abs(z) / math.sqrt(2)) <= 0.05  # two-sided p
        msprt_hits += msprt
        naive_hits += naive
    return msprt_hits / experiments, naive_hits / experiments


def test_msprt_stays_valid_under_continuous_monitoring_where_the_z_test_does_not():
    experiments = 300
    limit = 0.05 + 4 * math.sqrt(0.05 * 0.95 / experiments)
    msprt_rate, naive_rate = _peeking_rejections(0.1, 0.1, experiments, seed=3)
    assert msprt_rate <= limit
    assert naive_rate > limit  # peeking at the classical test inflates its error


def test_msprt_detects_a_real_difference():
    msprt_rate, _ = _peeking_rejections(0.10, 0.14, 100, seed=4)
    assert msprt_rate >= 0.9


def test_decision_single_variant():
    result = decision(metrics(("A", 5000, 500)))
    assert (result.winner, result.reason) == (None, SINGLE_VARIANT)


def test_decision_waits_for_min_samples_even_with_a_huge_effect():
    result = decision(metrics(("A", 99, 1), ("B", 500, 400)), min_samples=100)
    assert (result.winner, result.reason) == (None, TOO_FEW_SAMPLES)


def test_decision_no_clear_winner_between_equal_variants():
    result = decision(metrics(("A", 5000, 500), ("B", 5000, 505)))
    assert (result.winner, result.reason) == (None, NO_CLEAR_WINNER)


def test_decision_calls_a_clearly_better_challenger():
    result = decision(metrics(("Champion", 5000, 500), ("Challenger", 5000, 650)))
    assert (result.winner, result.reason, result.champion) == ("Challenger", WINNER, "Champion")


def test_decision_can_keep_the_champion():
    result = decision(metrics(("Champion", 5000, 650), ("C1", 5000, 500), ("C2", 5000, 480)))
    assert (result.winner, result.reason) == ("Champion", WINNER)


def test_champion_must_beat_every_challenger_significantly():
    # Champion most likely best, but C1 is within noise of it.
    result = decision(
        metrics(("Champion", 5000, 650), ("C1", 5000, 640), ("C2", 5000, 400)),
        probability_threshold=0.5,
    )
    assert result.variants[0].probability_best > 0.5
    assert (result.winner, result.reason) == (None, NO_CLEAR_WINNER)


def test_probability_threshold_alone_is_not_enough():
    # Likely best (> 95%) yet the always-valid test is not convinced at this sample size.
    ms = metrics(("A", 2000, 200), ("B", 2000, 240))
    assert probability_best(ms).probability["B"] > 0.95
    assert msprt_p_value(ms[0], ms[1]) > 0.05
    assert decision(ms).reason == NO_CLEAR_WINNER


def test_named_champion_is_the_baseline():
    ms = metrics(("A", 5000, 650), ("B", 5000, 500))
    result = decision(ms, champion="B")
    assert result.champion == "B"
    assert result.winner == "A"
    figures = {f.variant_name: f for f in result.variants}
    assert figures["B"].always_valid_p_value is None
    assert figures["A"].difference > 0
    with pytest.raises(ValueError, match="champion 'X'"):
        decision(ms, champion="X")


def test_decision_as_dict_is_json_with_the_figures():
    result = decision(metrics(("A", 0, 0), ("B", 300, 30)))
    data = json.loads(json.dumps(result.as_dict(), allow_nan=False))
    assert data["winner"] is None
    assert data["reason"] in REASONS
    assert data["champion"] == "A"
    assert [v["variant_name"] for v in data["variants"]] == ["A", "B"]
    for key in (
        "posterior_mean",
        "credible_interval",
        "probability_best",
        "expected_loss",
        "z_test_p_value",
        "always_valid_p_value",
    ):
        assert key in data["variants"][1]
    assert data["variants"][1]["z_test_p_value"] is None  # champion has no invocations


def test_verdict_is_the_decisions_winner_and_reason():
    # verdict skips the quadrature when no p-value passes; the answer must not change.
    rng = random.Random(8)
    for _ in range(150):
        k = rng.choice((2, 3, 4))
        n = [rng.choice((50, 150, 800, 4000)) for _ in range(k)]
        rows = [(f"v{i}", n[i], int(n[i] * rng.uniform(0.05, 0.2))) for i in range(k)]
        ms = metrics(*rows)
        full = decision(ms, probability_threshold=rng.choice((0.5, 0.95)))
        assert verdict(ms, probability_threshold=full.probability_threshold) == (
            full.winner,
            full.reason,
        )


def test_more_challengers_need_stronger_evidence_each():
    # Bonferroni: with k challengers each p-value must pass alpha / k. B's p-value against
    # A is between 0.025 and 0.05: enough with one challenger, not with two.
    two = metrics(("A", 5000, 500), ("B", 5000, 604))
    p_value = msprt_p_value(two[0], two[1])
    assert 0.025 < p_value < 0.05
    assert verdict(two) == ("B", WINNER)
    three = (*two, VariantMetrics("C", 1.0, 5000, 400, 400.0))
    assert probability_best(three).probability["B"] > 0.95
    assert verdict(three) == (None, NO_CLEAR_WINNER)


def test_too_few_samples_names_the_short_variants_and_the_users_to_get_there():
    result = decision(metrics(("A", 40, 4), ("B", 300, 30)), allocation={"A": 0.2, "B": 0.8})
    assert result.reason == TOO_FEW_SAMPLES
    assert "A (40)" in result.advice and "B" not in result.advice.split("short:")[1]
    assert result.users_needed == 300  # (100 - 40) / 0.2
    starved = decision(metrics(("A", 40, 4), ("B", 300, 30)), allocation={"A": 0.0, "B": 1.0})
    assert starved.users_needed is None


def test_users_needed_is_where_the_always_valid_test_would_pass_at_the_current_rates():
    ms = metrics(("A", 2000, 200), ("B", 2000, 240))
    result = decision(ms, allocation={"A": 0.3, "B": 0.7})
    assert result.reason == NO_CLEAR_WINNER
    assert "p-value of B against A" in result.advice
    n = result.users_needed
    assert n is not None and n > 0

    def at(users: int) -> float:  # the same rates, `users` more split 30 / 70
        na, nb = 2000 + round(0.3 * users), 2000 + round(0.7 * users)
        return msprt_p_value(*metrics(("A", na, 0.10 * na), ("B", nb, 0.12 * nb)))

    assert at(round(n * 1.02)) <= 0.05 < at(round(n * 0.95))


def test_no_difference_at_all_says_so_rather_than_inventing_a_number():
    result = decision(metrics(("A", 2000, 200), ("B", 2000, 200)))
    assert (result.reason, result.users_needed) == (NO_CLEAR_WINNER, None)
    assert "too close to tell" in result.advice


def test_a_winner_says_what_to_do():
    result = decision(metrics(("Champion", 5000, 500), ("Challenger", 5000, 650)))
    assert result.users_needed == 0
    assert result.advice.endswith("stop the test and serve Challenger")
