"""Off-policy estimators: formulas recomputed by hand, behaviour on known logs, clear errors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import optimize, stats

from bandit.offpolicy import (
    ESTIMATORS,
    Log,
    OffPolicyError,
    Replay,
    Terms,
    evaluate,
    normal_interval,
    skew_interval,
    student_interval,
    target_probabilities,
)
from bandit.thompson import ThompsonSampling
from bandit.weighted import WeightedSampling

VARIANTS = ("a", "b", "c")
Z95 = 1.959963984540054


def random_log(n: int, seed: int, means=(0.2, 0.5, 0.8), continuous: bool = False) -> Log:
    """A log drawn from a logging policy that changes per event, with exact propensities."""
    rng = random.Random(seed)
    served, rewards, propensities = [], [], []
    for _ in range(n):
        raw = [rng.uniform(0.1, 1.0) for _ in VARIANTS]
        probabilities = [x / sum(raw) for x in raw]
        j = rng.choices(range(3), probabilities)[0]
        served.append(VARIANTS[j])
        propensities.append(probabilities[j])
        mean = means[j]
        rewards.append(rng.gauss(mean, 1.0) if continuous else float(rng.random() < mean))
    return Log.of(VARIANTS, served, rewards, propensities)


def per_event_target(i: int) -> dict[str, float]:
    return {"a": 0.5, "b": 0.5} if i % 2 else {"c": 0.7, "a": 0.3}


def by_hand(log: Log, target: list[list[float]]):
    """The four estimates and standard errors with plain loops, straight from the papers."""
    n, k = len(log), len(log.variants)
    a = [int(x) for x in log.actions]
    r = [float(x) for x in log.rewards]
    p = [float(x) for x in log.propensities]
    w = [target[i][a[i]] / p[i] for i in range(n)]

    def sd(xs):
        m = math.fsum(xs) / len(xs)
        return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))

    def degrees(psi):
        # Satterthwaite: (sum psi^2)^2 / sum psi^4, psi centred on the estimate.
        return math.fsum(x * x for x in psi) ** 2 / math.fsum(x**4 for x in psi)

    def skewness(psi):
        m = math.fsum(psi) / len(psi)
        second = math.fsum((x - m) ** 2 for x in psi) / len(psi)
        return math.fsum((x - m) ** 3 for x in psi) / len(psi) / second**1.5

    q = []
    for j in range(k):
        num = math.fsum(r[i] / p[i] for i in range(n) if a[i] == j)
        den = math.fsum(1 / p[i] for i in range(n) if a[i] == j)
        q.append(num / den)
    pred = [math.fsum(target[i][j] * q[j] for j in range(k)) for i in range(n)]
    dm = math.fsum(pred) / n
    pibar = [math.fsum(target[i][j] for i in range(n)) / n for j in range(k)]
    den = [math.fsum(1 / p[i] for i in range(n) if a[i] == j) / n for j in range(k)]
    dm_psi = [pred[i] - dm + pibar[a[i]] / den[a[i]] * (r[i] - q[a[i]]) / p[i] for i in range(n)]
    ips_terms = [w[i] * r[i] for i in range(n)]
    ips = math.fsum(ips_terms) / n
    snips = math.fsum(ips_terms) / math.fsum(w)
    wbar = math.fsum(w) / n
    snips_psi = [w[i] * (r[i] - snips) / wbar for i in range(n)]
    dr_terms = [pred[i] + w[i] * (r[i] - q[a[i]]) for i in range(n)]
    dr = math.fsum(dr_terms) / n
    ess = math.fsum(w) ** 2 / math.fsum(x * x for x in w)
    root = math.sqrt(n)
    dr_psi = [x - dr for x in dr_terms]
    ips_psi = [x - ips for x in ips_terms]
    return {
        name: (value, sd(psi) / root, degrees(psi), skewness(psi))
        for name, value, psi in (
            ("DM", dm, dm_psi),
            ("IPS", ips, ips_psi),
            ("SNIPS", snips, snips_psi),
            ("DR", dr, dr_psi),
        )
    }, ess


def hall_limits(value: float, se: float, df: float, gamma: float, n: int) -> tuple[float, float]:
    """Hall's (1992) interval by root-finding: the θ where g((value − θ)/se) = ±t, with
    g(T) = T + γT²/(3√n) + γ²T³/(27n) + γ/(6√n) (increasing: g' = (1 + γT/(3√n))²)."""
    t = stats.t.ppf(0.975, df)
    a = gamma / math.sqrt(n)

    def g(x: float) -> float:
        return x + a * x * x / 3 + a * a * x**3 / 27 + a / 6

    upper_t = optimize.brentq(lambda x: g(x) - t, -1e3, 1e3, xtol=1e-14)
    lower_t = optimize.brentq(lambda x: g(x) + t, -1e3, 1e3, xtol=1e-14)
    return value - se * upper_t, value - se * lower_t


@pytest.mark.parametrize("continuous", [False, True])
def test_estimates_match_the_formulas_recomputed_by_hand(continuous):
    log = random_log(400, seed=3, continuous=continuous)
    expected, ess = by_hand(
        log, [[per_event_target(i).get(v, 0.0) for v in VARIANTS] for i in range(400)]
    )
    estimates = evaluate(log, per_event_target)
    normal = evaluate(log, per_event_target, interval=normal_interval)
    assert tuple(e.estimator for e in estimates) == ESTIMATORS
    student = evaluate(log, per_event_target, interval=student_interval)
    for e, z, s in zip(estimates, normal, student, strict=True):
        value, se, df, gamma = expected[e.estimator]
        t = stats.t.ppf(0.975, df)
        assert e.value == pytest.approx(value, abs=1e-9)
        assert e.std_error == pytest.approx(se, abs=1e-9)
        assert (e.low, e.high) == pytest.approx(hall_limits(value, se, df, gamma, 400), abs=1e-9)
        assert (s.low, s.high) == pytest.approx((value - t * se, value + t * se), abs=1e-9)
        assert (z.low, z.high) == pytest.approx((value - Z95 * se, value + Z95 * se), abs=1e-9)
        assert e.effective_sample_size == pytest.approx(ess, abs=1e-9)
        assert e.events == 400


def test_each_policy_form_gives_the_same_matrix():
    log = random_log(50, seed=1)
    constant = {"a": 0.2, "b": 0.3, "c": 0.5}
    matrix = target_probabilities(log, constant)
    assert np.allclose(target_probabilities(log, lambda i: constant), matrix)
    assert np.allclose(target_probabilities(log, lambda i: [0.2, 0.3, 0.5]), matrix)
    assert np.allclose(target_probabilities(log, "uniform"), 1 / 3)
    only_b = target_probabilities(log, "b")
    assert only_b[:, 1].tolist() == [1.0] * 50 and not only_b[:, [0, 2]].any()


def test_each_estimator_recovers_a_single_variants_mean_from_adaptive_logging():
    # 20,000 events: every interval covers the true mean of 0.8 (seeded, so no flakiness).
    log = random_log(20_000, seed=7)
    for e in evaluate(log, "c"):
        assert e.low < 0.8 < e.high, e
        assert e.reliable, e.warnings


def test_the_strategy_replay_allocates_as_the_strategy_would_at_each_refresh():
    log = random_log(250, seed=2)
    uniform = target_probabilities(log, Replay(WeightedSampling(), batch_size=100))
    assert np.allclose(uniform, 1 / 3)
    replay = target_probabilities(log, Replay(ThompsonSampling(), batch_size=100))
    assert np.allclose(replay[:100], 1 / 3)  # nothing observed yet
    assert np.allclose(replay[100], replay[199]) and not np.allclose(replay[100], replay[200])
    assert np.allclose(replay.sum(axis=1), 1.0)
    # After 200 events the best variant (c, mean 0.8) leads.
    assert replay[200].argmax() == 2
    assert evaluate(log, Replay(ThompsonSampling(), batch_size=100))[1].value == pytest.approx(
        float(np.mean(replay[np.arange(250), log.actions] / log.propensities * log.rewards))
    )


@pytest.mark.parametrize(("batch_size", "warned"), [(250, True), (1000, True), (249, False)])
def test_a_replay_in_one_batch_warns_that_it_never_saw_a_reward(batch_size, warned):
    # A log shorter than the batch replays the allocation without data throughout: the
    # uniform split's estimates under the strategy's name (`abtest evaluate`'s default
    # batch of 1,000 on a log of 600 gave every strategy the uniform row's values).
    log = random_log(250, seed=2)

    estimates = evaluate(log, Replay(ThompsonSampling(), batch_size=batch_size))

    note = f"replayed in one batch of {batch_size} for 250 events: it never saw a reward"
    for e in estimates:
        assert any(w.startswith(note) for w in e.warnings) is warned, e.warnings
    if warned:
        assert [e.value for e in estimates] == [e.value for e in evaluate(log, "uniform")]


def test_a_starved_variant_warns_with_the_reason():
    log = Log.of(("a", "b"), ["a"] * 199 + ["b"], [0.0] * 199 + [1.0], [0.999] * 199 + [0.001])
    dm, ips, snips, dr = evaluate(log, "b")
    for e in (ips, snips, dr):
        assert any("exploration floor" in w for w in e.warnings), e.warnings
        assert any("effective sample size 1.0" in w for w in e.warnings), e.warnings
    assert not dm.warnings


def test_propensities_that_do_not_match_the_draws_warn():
    # Logged 0.5 each, but drawn 90/10: weights average 0.5 / 0.5 * ... far from 1 for "a".
    rng = random.Random(0)
    served = ["a" if rng.random() < 0.9 else "b" for _ in range(2000)]
    log = Log.of(("a", "b"), served, [1.0] * 2000, [0.5] * 2000)
    ips = evaluate(log, "a")[1]
    assert any("do not match" in w for w in ips.warnings), ips.warnings


def test_a_variant_the_log_never_served_warns_on_every_estimate():
    log = Log.of(("a", "b"), ["a"] * 10, [1.0] * 10, [1.0] * 10)
    for e in evaluate(log, "uniform"):
        assert any("b, which the log never served" in w for w in e.warnings), e


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (lambda i: {"a": 0.5, "b": 0.4} if i == 3 else {"a": 1.0}, "event 3 sum to 0.9, not 1"),
        (lambda i: {"a": 1.0, "z": 0.0}, "unknown variant(s) ['z']"),
        (lambda i: [1.0], "gives 1 probabilities for 2 variants"),
        ({"a": 1.5, "b": -0.5}, "target probabilities of event 0 are [1.5, -0.5]"),
        ("zeta", "'zeta' is neither 'uniform' nor a variant"),
        (np.ones((2, 2)), "shape (2, 2), expected (10, 2)"),
    ],
)
def test_a_bad_target_policy_is_one_error_naming_the_problem(policy, message):
    log = Log.of(("a", "b"), ["a", "b"] * 5, [1.0] * 10, [0.5] * 10)
    with pytest.raises(OffPolicyError) as caught:
        evaluate(log, policy)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("served", "rewards", "propensities", "message"),
    [
        (["a", "b", "a"], [1, 0, 1], [0.5, 0.5, None], "event 2 was logged without a propensity"),
        (["a", "b", "a"], [1, 0, 1], [0.5, 0.0, 0.5], "event 1 has propensity 0.0, not in (0, 1]"),
        (["a", "b", "a"], [1, 0, 1], [0.5, 1.5, 0.5], "event 1 has propensity 1.5"),
        (["a", "b", "a"], [1, 0, 1], [0.5, math.nan, 0.5], "(logged without one)"),
        (["a", "q", "a"], [1, 0, 1], [0.5, 0.5, 0.5], "event 1 served unknown variant 'q'"),
        (["a", "b", "a"], [1, math.inf, 1], [0.5] * 3, "event 1 has reward inf"),
        (["a"], [1], [0.5], "at least 2 are needed"),
    ],
)
def test_a_bad_log_is_one_error_naming_the_event(served, rewards, propensities, message):
    with pytest.raises(OffPolicyError) as caught:
        Log.of(("a", "b"), served, rewards, propensities)
    assert message in str(caught.value)


def test_a_given_reward_model_is_the_doubly_robust_ones():
    log = random_log(300, seed=5, continuous=True)
    rng = np.random.default_rng(0)
    model = rng.random((300, 3))
    target = target_probabilities(log, per_event_target)
    dm, _, _, dr = evaluate(log, per_event_target, reward_model=model)
    terms = [
        sum(target[i, j] * model[i, j] for j in range(3))
        + target[i, log.actions[i]]
        / log.propensities[i]
        * (log.rewards[i] - model[i, log.actions[i]])
        for i in range(300)
    ]
    assert dr.value == pytest.approx(math.fsum(terms) / 300, abs=1e-9)
    assert dr.std_error == pytest.approx(np.std(terms, ddof=1) / math.sqrt(300), abs=1e-9)
    # The direct method keeps its own model (each variant's weighted mean) and interval.
    assert dm == evaluate(log, per_event_target)[0]
    # A callable model predicts chunk by chunk: the same estimate.
    by_chunk = evaluate(log, per_event_target, reward_model=lambda chunk: model[: len(chunk)])[3]
    assert by_chunk.value == pytest.approx(dr.value, abs=1e-12)


def test_a_variant_starved_but_never_drawn_still_warns():
    # b was never drawn: its propensity was at most 1e-6, so its weight would be 1e6.
    log = Log.of(("a", "b"), ["a"] * 300, [1.0] * 300, [1 - 1e-6] * 300)
    ips = evaluate(log, {"a": 0.5, "b": 0.5})[1]
    assert any("left at most 1e-06" in w and "starved" in w for w in ips.warnings), ips.warnings
    assert not any("do not match" in w for w in ips.warnings)


def test_a_log_read_in_chunks_gives_the_same_estimates(monkeypatch):
    # evaluate reads the log chunk by chunk (bounded memory); chunks of 7 events, with the
    # replay's refreshes and the per-event target straddling them, change nothing.
    log = random_log(250, seed=4)
    policies = {
        "per event": per_event_target,
        "replay": Replay(ThompsonSampling(), batch_size=20),
        "uniform": "uniform",
    }
    whole = {name: evaluate(log, policy) for name, policy in policies.items()}
    monkeypatch.setattr("bandit.offpolicy.CHUNK_EVENTS", 7)
    assert len(list(log.chunks())) == 36
    for name, policy in policies.items():
        for chunked, single in zip(evaluate(log, policy), whole[name], strict=True):
            assert chunked.value == pytest.approx(single.value, abs=1e-12)
            assert chunked.std_error == pytest.approx(single.std_error, abs=1e-12)
            assert (chunked.low, chunked.high) == pytest.approx((single.low, single.high))
            assert chunked.warnings == single.warnings


def test_heavy_weights_widen_the_interval_beyond_the_normal_one():
    # A variant at a 5 % floor converting rarely: few heavy terms carry the variance, so
    # the t quantile (Satterthwaite's degrees of freedom) exceeds the normal 1.96.
    rng = np.random.default_rng(1)
    n = 2000
    served = np.where(rng.random(n) < 0.05, "b", "a")
    rewards = np.where(served == "b", rng.random(n) < 0.1, rng.random(n) < 0.5)
    log = Log.of(("a", "b"), served.tolist(), rewards.astype(float).tolist(),
                 np.where(served == "b", 0.05, 0.95).tolist())  # fmt: skip
    t_ips = evaluate(log, "b", interval=student_interval)[1]
    z_ips = evaluate(log, "b", interval=normal_interval)[1]
    assert t_ips.std_error == z_ips.std_error
    assert (t_ips.high - t_ips.low) / (z_ips.high - z_ips.low) > 1.02
    # Skewed terms (b converts rarely at weight 20): the default, skew-corrected interval
    # reaches further above the estimate than below it.
    skewed = evaluate(log, "b")[1]
    assert skewed.high - skewed.value > skewed.value - skewed.low
    # Many comparable terms: all three agree.
    z_a = evaluate(log, "a", interval=normal_interval)[1]
    for interval in (student_interval, skew_interval):
        e = evaluate(log, "a", interval=interval)[1]
        assert (e.high - e.low) / (z_a.high - z_a.low) == pytest.approx(1.0, abs=0.002)


def test_the_skew_corrected_interval_misses_as_often_on_either_side():
    # A variant served one time in ten, converting one time in ten: IPS terms of 10 on
    # ~50 conversions out of 5,000 events, skewed to the right. When the estimate falls
    # short, so does its standard error, so the symmetric t interval lies wholly below
    # the truth more often than above it; Hall's correction evens the two.
    # 4,000 seeded runs: a tail's miss rate near 0.025 is measured to ±0.0025 (one
    # standard error, √(0.025 · 0.975 / 4000)), a difference of two to ±0.0035; the t
    # interval's tails differ by ~0.02 (a margin of 3.5 standard errors to 0.008), the
    # corrected one's by ~0 (a margin of 3.5 to 0.012), and its coverage, ~0.96 here,
    # is above 0.94 (0.95 less 3 standard errors of 0.0034).
    rng = np.random.default_rng(0)
    runs, n, truth = 4000, 5000, 0.1
    misses = {student_interval: [0, 0], skew_interval: [0, 0]}
    for _ in range(runs):
        converted = (rng.random(n) < 0.1) & (rng.random(n) < truth)
        terms = np.where(converted, 1 / 0.1, 0.0)
        value, influence = float(terms.mean()), Terms()
        influence.add(terms - value)
        for interval, (below, above) in list(misses.items()):
            _, low, high = interval(value, influence, 0.95)
            misses[interval] = [below + (truth < low), above + (truth > high)]
    (t_below, t_above), (s_below, s_above) = (
        np.array(misses[student_interval]) / runs,
        np.array(misses[skew_interval]) / runs,
    )
    assert t_above - t_below > 0.008, (t_below, t_above)
    assert abs(s_above - s_below) < 0.012, (s_below, s_above)
    assert 1 - s_below - s_above > 0.94
