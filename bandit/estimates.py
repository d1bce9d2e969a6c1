"""Estimates that stay right under adaptive allocation, their confidence sequences, and the
sample-ratio check. Standard library only (the stats Lambda imports it).

An adaptive allocation gives the leader more users as it pulls ahead, so a variant's raw
mean is biased (the loser stops being measured while it is unlucky). Re-weighting each
trial by its logged assignment propensity p removes that bias: with A_t the variant trial t
went to and y_t its outcome, the terms 1{A_t = k} (y_t - mu_k) / p_t are martingale
differences whatever the allocation rule did, as long as p_t is the probability it used.

- Horvitz-Thompson: mu_k = sum y/p over N, N the trials with a propensity (all variants).
- Hajek (self-normalised): mu_k = sum y/p over sum 1/p. Biased by O(1/N) only, and with a
  far smaller variance when the propensities are small (Hajek, 1971, "Comment on a paper
  by D. Basu"); the estimate `/stats` reports and the decision uses.

Linearised (delta-method) variances, from the sums VariantMetrics keeps:
    Var(HT)    ~ (sum y²/p² / N - HT²) / N
    Var(Hajek) ~ sum (y - mu)²/p² / W² = (Q - 2 mu C + mu² W2) / W²
with W = sum 1/p, W2 = sum 1/p², C = sum y/p², Q = sum y²/p². A trial goes to one variant
only, so the variance of a difference of two variants' Hajek estimates is the sum of theirs.

Confidence sequences are the asymptotic ones of Waudby-Smith, Arnold, Wu, Ramdas, Howard,
"Time-uniform central limit theory and asymptotic confidence sequences" (Annals of
Statistics, 2024; arXiv 2103.06476), Gaussian-mixture boundary: after N trials, with
sigma² = N Var(estimate) the variance per trial,
    estimate ± sigma sqrt( 2 (N rho² + 1) / (N² rho²) log( sqrt(N rho² + 1) / alpha ) ),
which covers the truth at every N at once with probability -> 1 - alpha, so it may be
looked at after every batch. rho sets where it is tightest, N* = (-2 log alpha +
log(1 - 2 log alpha)) / rho² trials (their Appendix); it is N* = 40,000 trials unless
the caller plans for another size (`tightest_at`, an endpoint's `planned_sample_size`).
Measured (bench/decisions.py, 200 runs, N* 10,000 / 20,000 / 40,000): the default
allocation decided within 2,000 users of the same median at each (27,000-29,000 on both
issue settings), while A/A false calls fell (0.03-0.06 to 0.02-0.045): the asymptotic
sequence is least exact at the first looks, where a later N* makes it wider. Since rho
is in units of the per-trial spread, the boundary follows the rates (and the currency of
continuous rewards) by itself. It is the normal-mixture mSPRT of Johari et al. with
mixing variance tau² = rho² sigma²: the p-value below is its dual (0 is outside the
sequence at level alpha exactly when the p-value is <= alpha).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bandit.metrics import BINARY, CONTINUOUS, VariantMetrics
from bandit.planning import TIGHTEST_AT
from bandit.posterior import beta_parameters

_ALPHA_DESIGN = 0.05


def rho_squared(tightest_at: int) -> float:
    """The mixing parameter rho² that makes the sequence tightest at `tightest_at` trials."""
    if tightest_at < 1:
        raise ValueError(f"tightest_at must be >= 1, got {tightest_at!r}")
    design = -2.0 * math.log(_ALPHA_DESIGN) + math.log(1.0 - 2.0 * math.log(_ALPHA_DESIGN))
    return design / tightest_at


RHO_SQUARED = rho_squared(TIGHTEST_AT)
# The sample-ratio check runs on every poll for the life of the endpoint and a flag blocks a
# correct call, so a false alarm must be rare: 0.001 (Bonferroni over the variants). A real
# mismatch grows its evidence linearly in N, so a small alpha only delays the flag: 10 % of
# one variant's assignments lost on a 30/70 split is flagged by 20,000 trials (the tests).
SAMPLE_RATIO_ALPHA = 0.001


@dataclass(frozen=True, slots=True)
class Estimate:
    """An estimate of a mean outcome per trial (or of a difference of two) and its variance;
    `trials` is N, the intrinsic time of its confidence sequence."""

    value: float
    variance: float
    trials: int
    # Fixed mixing variance tau² of the mSPRT instead of rho² sigma² (the binary raw decision's,
    # kept as it always was); None for the scale-free sequence.
    mixing_variance: float | None = None
    # Where the scale-free sequence is tightest (its rho²), in trials.
    tightest_at: int = TIGHTEST_AT

    @property
    def standard_error(self) -> float:
        return math.sqrt(self.variance)

    def interval(self, alpha: float) -> tuple[float, float]:
        """The anytime-valid (1 - alpha) confidence sequence at this N."""
        r = cs_radius(self.variance, self.trials, alpha, self.mixing_variance, self.tightest_at)
        return self.value - r, self.value + r

    def p_value(self) -> float:
        """Always-valid p-value of value = 0: the smallest alpha whose sequence excludes 0."""
        return mixture_p_value(
            self.value, self.variance, self.trials, self.mixing_variance, self.tightest_at
        )


def weighted(metrics: Sequence[VariantMetrics]) -> bool:
    """Whether the counters carry inverse-propensity sums (unit "user"); else raw estimates."""
    return any(m.weight_sum > 0.0 for m in metrics)


def trials_with_propensity(metrics: Sequence[VariantMetrics]) -> int:
    """N: every variant's trials (with the "user" unit each one is a logged assignment)."""
    return sum(m.invocation_count for m in metrics)


def hajek(
    m: VariantMetrics, trials: int, spread: float = 0.0, tightest_at: int = TIGHTEST_AT
) -> Estimate | None:
    """Self-normalised IPW mean and its linearised variance; None without weights.

    With `spread` (a per-trial variance), the variance is at least spread * sum 1/p² / W²,
    what it would be if this variant's outcomes varied as much as that.
    """
    if m.weight_sum <= 0.0:
        return None
    mu = m.weighted_reward_sum / m.weight_sum
    squares = (
        m.weighted_reward_sq_sum
        - 2.0 * mu * m.weighted_reward_cross_sum
        + mu * mu * m.weight_sq_sum
    )
    variance = max(squares, spread * m.weight_sq_sum, 0.0) / m.weight_sum**2
    return Estimate(mu, variance, trials, tightest_at=tightest_at)


def pooled_spread(metrics: Sequence[VariantMetrics]) -> float:
    """Variance of every trial's outcome, all variants pooled (raw sums)."""
    n = trials_with_propensity(metrics)
    if n == 0:
        return 0.0
    mean = math.fsum(m.reward_sum for m in metrics) / n
    return max(math.fsum(m.reward_sq_sum for m in metrics) / n - mean * mean, 0.0)


def decision_estimates(
    metrics: Sequence[VariantMetrics], reward: str = BINARY, tightest_at: int = TIGHTEST_AT
) -> tuple[bool, int, dict[str, Estimate | None]]:
    """Whether weights are used, N, and each variant's estimate as the decision uses it.

    Continuous rewards with weights: each variant's variance is at least the pooled one's.
    Revenue is mostly 0 with a heavy tail, and a variant the allocation starves has few
    conversions, each weighted 1/p: its own variance is then most often too small exactly
    when its estimate is low (no large draw yet), and the sequence was crossed in 8 % of
    A/A runs; the pooled spread does not move with that one variant's luck.
    """
    use_weights = weighted(metrics)
    trials = trials_with_propensity(metrics)
    if use_weights:
        spread = pooled_spread(metrics) if reward == CONTINUOUS else 0.0
        return (
            True,
            trials,
            {m.variant_name: hajek(m, trials, spread, tightest_at) for m in metrics},
        )
    return False, trials, {m.variant_name: raw(m, trials, reward, tightest_at) for m in metrics}


def horvitz_thompson(m: VariantMetrics, trials: int) -> Estimate | None:
    """Plain IPW mean (sum y/p over N) and its linearised variance; None without trials."""
    if trials <= 0 or m.weight_sum <= 0.0:
        return None
    mu = m.weighted_reward_sum / trials
    return Estimate(mu, max(m.weighted_reward_sq_sum / trials - mu * mu, 0.0) / trials, trials)


def raw(
    m: VariantMetrics, trials: int, reward: str = BINARY, tightest_at: int = TIGHTEST_AT
) -> Estimate | None:
    """The plain mean per trial (for the "invocation" unit, which logs no weights): valid
    under a fixed split only. Binary: the rate with the reward sum clipped to [0, n] and the
    Bernoulli variance at the posterior mean (never 0, as in the mSPRT); continuous: the
    sample variance."""
    n = m.invocation_count
    if n == 0:
        return None
    if reward == BINARY:
        a, b = beta_parameters(m)
        mean = a / (a + b)
        return Estimate((a - 1.0) / n, mean * (1.0 - mean) / n, trials, tightest_at=tightest_at)
    mu = m.reward_sum / n
    variance = max(m.reward_sq_sum / n - mu * mu, 0.0) / n
    return Estimate(mu, variance, trials, tightest_at=tightest_at)


def difference(
    challenger: Estimate | None, champion: Estimate | None, mixing_variance: float | None = None
) -> Estimate | None:
    """Challenger minus champion; the variances add (a trial goes to one variant only)."""
    if challenger is None or champion is None:
        return None
    return Estimate(
        challenger.value - champion.value,
        challenger.variance + champion.variance,
        max(challenger.trials, champion.trials),
        mixing_variance,
        challenger.tightest_at,
    )


def mixing_ratio(
    variance: float, trials: int, mixing_variance: float | None, tightest_at: int
) -> float:
    """x = tau² / variance: N rho² for the scale-free sequence (tau² = rho² N variance)."""
    if mixing_variance is None:
        return trials * rho_squared(tightest_at)
    return mixing_variance / variance


def cs_radius(
    variance: float,
    trials: int,
    alpha: float,
    mixing_variance: float | None = None,
    tightest_at: int = TIGHTEST_AT,
) -> float:
    """Half-width of the Gaussian-mixture asymptotic confidence sequence (module docstring):
    sqrt(2 variance (x + 1) / x log(sqrt(x + 1) / alpha)), x = tau² / variance."""
    if variance <= 0.0 or trials <= 0:
        return 0.0
    x = mixing_ratio(variance, trials, mixing_variance, tightest_at)
    return math.sqrt(2.0 * variance * (x + 1.0) / x * math.log(math.sqrt(x + 1.0) / alpha))


def mixture_p_value(
    value: float,
    variance: float,
    trials: int,
    mixing_variance: float | None = None,
    tightest_at: int = TIGHTEST_AT,
) -> float:
    """1 / Lambda, Lambda the mixture likelihood ratio of value = 0: sqrt(1 / (1 + x))
    exp(value² x / (2 variance (1 + x))), x = tau² / variance. 1.0 without a variance."""
    if variance <= 0.0 or trials <= 0:
        return 1.0
    x = mixing_ratio(variance, trials, mixing_variance, tightest_at)
    log_lambda = -0.5 * math.log1p(x) + value * value * x / (2.0 * variance * (1.0 + x))
    return 1.0 if log_lambda <= 0.0 else math.exp(-log_lambda)


@dataclass(frozen=True, slots=True)
class SampleRatio:
    """The sample-ratio check: per variant the Horvitz-Thompson count sum 1/p, which has
    expectation N when the logged propensities are the probabilities used, and the
    always-valid p-value of that; `mismatch` when the smallest is <= alpha / variants."""

    trials: int
    expected: float
    observed: dict[str, float]
    p_values: dict[str, float]
    alpha: float
    mismatch: bool


def sample_ratio(
    metrics: Sequence[VariantMetrics], alpha: float = SAMPLE_RATIO_ALPHA
) -> SampleRatio | None:
    """None when no variant has weights (nothing logged to check against).

    Each 1{A_t = k} / p_t - 1 is a martingale difference with conditional variance
    1/p_t - 1, estimated unbiasedly by sum (1/p² - 1/p) = weight_sq_sum - weight_sum over the
    trials k got; the mixture p-value above tests W_k / N - 1 = 0. Lost or duplicated
    assignments, a cache serving stale allocations, or propensities logged wrong all show.
    It needs every variant to keep a positive share (the floor does that): a strategy that
    gives a variant probability 0 (UCB1 or EpsilonGreedy with floor 0) breaks E[W_k] = N.
    """
    if not weighted(metrics):
        return None
    n = trials_with_propensity(metrics)
    p_values = {}
    for m in metrics:
        variance = (m.weight_sq_sum - m.weight_sum) / n**2 if n else 0.0
        gap = m.weight_sum / n - 1.0 if n else 0.0
        if variance > 0.0:
            p_values[m.variant_name] = mixture_p_value(gap, variance, n)
        else:  # no assignment yet, or only with p = 1: nothing to test
            p_values[m.variant_name] = 1.0
    level = alpha / len(metrics)
    return SampleRatio(
        n,
        float(n),
        {m.variant_name: m.weight_sum for m in metrics},
        p_values,
        alpha,
        min(p_values.values()) <= level,
    )
