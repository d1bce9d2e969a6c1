"""Is there a winner yet? Posterior summaries, classical and always-valid tests, a decision.

Standard library only, so the stats Lambda stays lean. The decision needs four things at
once: a sample-ratio check that passes (when propensities are logged), enough samples on
every variant, a leader whose probability of being best passes a threshold, and an
always-valid p-value against the champion below alpha / challengers, which, unlike the
article's z-test, stays valid however often /stats is polled.

Which estimate the p-value rests on (bandit.estimates): with logged propensities (unit
"user") the self-normalised inverse-propensity (Hajek) estimate, unbiased under the
adaptive allocation, and its Gaussian-mixture confidence sequence; without them (unit
"invocation") the raw counts, as the original did, and for binary rewards exactly the mSPRT
it always used. The posterior P(best) stays the Bayesian one on the raw counts: a
posterior conditions on the data and is not biased by how the data were allocated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from bandit.estimates import (
    SAMPLE_RATIO_ALPHA,
    Estimate,
    SampleRatio,
    decision_estimates,
    difference,
    horvitz_thompson,
    mixture_p_value,
    sample_ratio,
)
from bandit.metrics import BINARY, CONTINUOUS, VariantMetrics, check_reward
from bandit.planning import TIGHTEST_AT
from bandit.posterior import (
    best_arm_probabilities,
    best_probabilities,
    beta_parameters,
    student_t_parameters,
)
from bandit.special import beta_ppf, normal_cdf, student_t_ppf
from bandit.stopping import ASSUMED_LOOKS, adjusted_estimate
from bandit.strategy import check_metrics

WINNER = "winner"
TOO_FEW_SAMPLES = "too_few_samples"
NO_CLEAR_WINNER = "no_clear_winner"
SINGLE_VARIANT = "single_variant"
SAMPLE_RATIO_MISMATCH = "sample_ratio_mismatch"
REASONS = (WINNER, TOO_FEW_SAMPLES, NO_CLEAR_WINNER, SINGLE_VARIANT, SAMPLE_RATIO_MISMATCH)

# Prior sd of the true difference in reward rate under the alternative: five percentage
# points, the size of difference model variants are usually A/B tested for. It sets where
# the mSPRT is most powerful (the p-value stays valid whatever it is); with one point, a
# 15-point gap seen on 100 vs 1,900 users still gave p = 0.77. See msprt_p_value.
DEFAULT_MIXING_VARIANCE = 0.05**2


@dataclass(frozen=True, slots=True)
class Posterior:
    """Beta posterior of a variant's conversion rate, with its equal-tailed credible interval."""

    mean: float
    lower: float
    upper: float


def posterior(metrics: VariantMetrics, level: float = 0.95) -> Posterior:
    """Mean and equal-tailed `level` credible interval of Beta(1 + successes, 1 + failures)."""
    a, b = beta_parameters(metrics)
    tail = (1.0 - level) / 2.0
    return Posterior(a / (a + b), beta_ppf(tail, a, b), beta_ppf(1.0 - tail, a, b))


def posteriors(
    metrics: Sequence[VariantMetrics], level: float = 0.95, reward: str = BINARY
) -> list[Posterior]:
    """Every variant's posterior of its mean outcome per trial: Beta for binary rewards, the
    Student-t marginal of the Normal-Inverse-Gamma model for continuous ones (its prior
    pools the variants, so they come together)."""
    if reward != CONTINUOUS:
        return [posterior(m, level) for m in metrics]
    tail = (1.0 - level) / 2.0
    out = []
    for loc, scale, dof in student_t_parameters(metrics):
        q = student_t_ppf(1.0 - tail, dof)
        out.append(Posterior(loc, loc - q * scale, loc + q * scale))
    return out


@dataclass(frozen=True, slots=True)
class BestArm:
    """Per variant: probability of being best, its Monte Carlo standard error (0.0 when
    computed by quadrature) and expected loss E[max_j p_j - p_i] of picking it."""

    probability: dict[str, float]
    standard_error: dict[str, float]
    expected_loss: dict[str, float]


def probability_best(
    metrics: Sequence[VariantMetrics],
    *,
    draws: int = 0,
    rng: random.Random | None = None,
    reward: str = BINARY,
) -> BestArm:
    """Probability each variant has the highest mean outcome under the posteriors (Beta, or
    Student-t for continuous rewards).

    By quadrature (error < 5e-4, the same numbers as the Thompson allocation) unless
    `draws` > 0: then by Monte Carlo posterior draws, standard error sqrt(p (1 - p) / draws).
    """
    metrics = check_metrics(metrics)
    names = [m.variant_name for m in metrics]
    if reward == CONTINUOUS:
        t_params = student_t_parameters(metrics)
        means = [loc for loc, _, _ in t_params]

        def draw(rng: random.Random) -> list[float]:
            return [
                loc + scale * rng.gauss() / math.sqrt(rng.gammavariate(dof / 2.0, 2.0) / dof)
                for loc, scale, dof in t_params
            ]
    else:
        params = [beta_parameters(m) for m in metrics]
        means = [a / (a + b) for a, b in params]

        def draw(rng: random.Random) -> list[float]:
            return [rng.betavariate(a, b) for a, b in params]

    if draws <= 0:
        if reward == CONTINUOUS:
            probs, expected_max = best_probabilities(metrics, reward)
        else:
            probs, expected_max = best_arm_probabilities(params)
        errors = [0.0] * len(names)
    else:
        rng = rng or random.Random()
        wins = [0] * len(names)
        total_max = 0.0
        for _ in range(draws):
            sample = draw(rng)
            top = max(sample)
            wins[sample.index(top)] += 1
            total_max += top
        probs = [w / draws for w in wins]
        expected_max = total_max / draws
        errors = [math.sqrt(p * (1.0 - p) / draws) for p in probs]
    return BestArm(
        dict(zip(names, probs, strict=True)),
        dict(zip(names, errors, strict=True)),
        {n: max(expected_max - mu, 0.0) for n, mu in zip(names, means, strict=True)},
    )


def _observed_rate(m: VariantMetrics) -> float:
    """Conversion rate with the reward sum clipped to [0, invocations] (as the posterior)."""
    a, _ = beta_parameters(m)
    return (a - 1.0) / m.invocation_count


@dataclass(frozen=True, slots=True)
class ZTest:
    z: float
    p_value: float


def two_proportion_z_test(champion: VariantMetrics, challenger: VariantMetrics) -> ZTest | None:
    """The article's test: pooled two-proportion z-test, one-sided H1 challenger > champion.

    z = (p2 - p1) / sqrt(p (1 - p) (1/n1 + 1/n2)), p the pooled rate; p-value 1 - Phi(z)
    (Fleiss, Levin, Paik, *Statistical Methods for Rates and Proportions*, 3rd ed., 2003,
    ch. 3). Valid for one look at a fixed sample size only. None if a variant has no
    invocations; z = 0, p = 0.5 when the pooled rate is 0 or 1 (no evidence either way).
    """
    n1, n2 = champion.invocation_count, challenger.invocation_count
    if n1 == 0 or n2 == 0:
        return None
    s1 = beta_parameters(champion)[0] - 1.0
    s2 = beta_parameters(challenger)[0] - 1.0
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return ZTest(0.0, 0.5)
    z = (s2 / n2 - s1 / n1) / se
    return ZTest(z, 1.0 - normal_cdf(z))


def msprt_p_value(
    champion: VariantMetrics,
    challenger: VariantMetrics,
    mixing_variance: float = DEFAULT_MIXING_VARIANCE,
) -> float | None:
    """Always-valid p-value for H0: equal conversion rates (two-sided), by the normal-mixture
    mSPRT of Johari, Koomen, Pekelis, Walsh, "Peeking at A/B tests" (KDD 2017) and "Always
    valid inference: continuous monitoring of A/B tests" (Operations Research 70(3), 2022).

    With d the observed difference in rates, v = s1²/n1 + s2²/n2 its variance and tau² the
    mixing variance (prior variance of the true difference), the mixture likelihood ratio is
        Lambda = sqrt(v / (v + tau²)) * exp(tau² d² / (2 v (v + tau²)))
    (for n1 = n2 = n this is their Lambda_n with V = n v), and p = min(1, 1 / Lambda).
    P(p ever <= alpha) <= alpha, so it may be checked after every batch. Only the current
    counts are known, not the path, so this is 1/Lambda now rather than the running minimum:
    larger, hence still valid (conservative). Per-variant variances use the posterior mean
    rate so that 0 or n conversions do not give a zero variance. None without invocations.
    """
    if not mixing_variance > 0.0:
        raise ValueError(f"mixing_variance must be > 0, got {mixing_variance!r}")
    n1, n2 = champion.invocation_count, challenger.invocation_count
    if n1 == 0 or n2 == 0:
        return None
    (a1, b1), (a2, b2) = beta_parameters(champion), beta_parameters(challenger)
    d = _observed_rate(challenger) - _observed_rate(champion)
    m1, m2 = a1 / (a1 + b1), a2 / (a2 + b2)
    v = m1 * (1.0 - m1) / n1 + m2 * (1.0 - m2) / n2
    log_lambda = 0.5 * math.log(v / (v + mixing_variance)) + (
        mixing_variance * d * d / (2.0 * v * (v + mixing_variance))
    )
    return 1.0 if log_lambda <= 0.0 else math.exp(-log_lambda)


@dataclass(frozen=True, slots=True)
class VariantFigures:
    variant_name: str
    invocation_count: int
    reward_sum: float
    posterior_mean: float
    credible_interval: tuple[float, float]
    probability_best: float
    expected_loss: float
    # Versus the champion (None for the champion itself, or without invocations):
    difference: float | None  # observed mean outcome (conversion rate) minus the champion's
    z: float | None
    z_test_p_value: float | None
    always_valid_p_value: float | None  # of the estimated difference below
    # The estimate the decision uses of the mean outcome per trial (Hajek with logged
    # propensities, the raw mean without; None without trials), its standard error and its
    # anytime-valid (1 - alpha) confidence sequence now; Horvitz-Thompson beside it:
    estimate: float | None = None
    estimate_se: float | None = None
    estimate_interval: tuple[float, float] | None = None
    horvitz_thompson_estimate: float | None = None
    horvitz_thompson_se: float | None = None
    # The same for the difference against the champion (None for the champion), the
    # sequence at the level the call uses (Decision.difference_alpha):
    difference_estimate: float | None = None
    difference_se: float | None = None
    difference_interval: tuple[float, float] | None = None
    # Once a winner is called, for each difference the call rests on: the estimate adjusted
    # for the winner's curse of stopping when it was high (bandit.stopping); else None.
    difference_adjusted: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """`winner` is a variant name or None; `reason` one of REASONS; the rest are the figures."""

    winner: str | None
    reason: str
    champion: str
    min_samples: int
    alpha: float
    probability_threshold: float
    mixing_variance: float
    variants: tuple[VariantFigures, ...]
    # For a person: what the answer rests on, or which check blocks it and what would change
    # it; and how many more users, at the current rates and allocation, that would take
    # (None when it cannot be told: no difference yet, or a variant gets no traffic).
    advice: str = ""
    users_needed: int | None = None
    reward: str = BINARY
    # "hajek" (propensity-weighted, unit "user") or "raw" (unit "invocation"), and in words:
    estimator: str = "raw"
    unit_note: str = ""
    difference_alpha: float | None = None  # alpha / challengers, the level of each call
    sample_ratio: dict | None = None  # bandit.estimates.SampleRatio, None when not checked

    def as_dict(self) -> dict:
        """JSON-able (no NaN or infinity; tuples become lists under json.dumps)."""
        return asdict(self)


HAJEK = "hajek"
RAW = "raw"
_NOTES = {
    HAJEK: "estimates re-weighted by the logged assignment propensities (self-normalised "
    "inverse-propensity, Hajek): unbiased under the adaptive allocation; sample-ratio check run",
    RAW: "estimates are the raw means (the invocation unit, or no logged propensities yet), "
    "biased when the allocation adapts; sample-ratio check not run",
}


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What the call rests on: per variant its estimate, per challenger (difference, p)."""

    estimator: str
    trials: int
    estimates: dict[str, Estimate | None]
    differences: dict[str, Estimate | None]
    against: dict[str, tuple[float, float]]
    # The always-valid p-value of each challenger as /stats shows it: None without the
    # trials to compute it (`against` counts that as no evidence, p = 1).
    p_values: dict[str, float | None]


def _evidence(
    metrics: tuple[VariantMetrics, ...],
    champion: str,
    reward: str,
    mixing_variance: float,
    tightest_at: int = TIGHTEST_AT,
) -> _Evidence:
    use_weights, trials, estimates = decision_estimates(metrics, reward, tightest_at)
    # Binary rewards without propensities keep the original mSPRT bit for bit; everything
    # else uses the scale-free sequence (a fixed tau² means nothing for revenue).
    exact = reward == BINARY and not use_weights
    base = estimates[champion]
    base_metrics = metrics[[m.variant_name for m in metrics].index(champion)]
    differences: dict[str, Estimate | None] = {}
    against: dict[str, tuple[float, float]] = {}
    p_values: dict[str, float | None] = {}
    for m in metrics:
        if m.variant_name == champion:
            continue
        d = difference(estimates[m.variant_name], base, mixing_variance if exact else None)
        differences[m.variant_name] = d
        if exact:
            p_value = msprt_p_value(base_metrics, m, mixing_variance)
            gap = _observed_rate(m) - _observed_rate(base_metrics) if p_value is not None else 0.0
        else:
            p_value = None if d is None else d.p_value()
            gap = 0.0 if d is None else d.value
        p_values[m.variant_name] = p_value
        # No trials (min_samples = 0): no evidence either way.
        against[m.variant_name] = (gap, 1.0 if p_value is None else p_value)
    return _Evidence(
        HAJEK if use_weights else RAW, trials, estimates, differences, against, p_values
    )


def _raw_difference(
    base: VariantMetrics, m: VariantMetrics, reward: str
) -> tuple[float | None, ZTest | None]:
    """The observed difference in mean outcome and the one-look z-test (pooled two-proportion
    for binary rewards, Welch's unpooled z for continuous ones)."""
    if not m.invocation_count or not base.invocation_count:
        return None, None
    if reward == BINARY:
        return _observed_rate(m) - _observed_rate(base), two_proportion_z_test(base, m)
    n1, n2 = base.invocation_count, m.invocation_count
    m1, m2 = base.reward_sum / n1, m.reward_sum / n2
    v = (
        max(base.reward_sq_sum / n1 - m1 * m1, 0.0) / n1
        + max(m.reward_sq_sum / n2 - m2 * m2, 0.0) / n2
    )
    if v <= 0.0:
        return m2 - m1, ZTest(0.0, 0.5)
    z = (m2 - m1) / math.sqrt(v)
    return m2 - m1, ZTest(z, 1.0 - normal_cdf(z))


def _bounded(
    interval: tuple[float, float], reward: str, *, difference: bool = False
) -> tuple[float, float]:
    """A binary rate lies in [0, 1] (a difference of two in [-1, 1]): the sequence cut to
    that range covers whatever the uncut one covers, and reads right early on, when the
    asymptotic one still reaches past it. Continuous rewards have no such range."""
    if reward != BINARY:
        return interval
    low = -1.0 if difference else 0.0
    return max(interval[0], low), min(interval[1], 1.0)


def decision(
    metrics: Sequence[VariantMetrics],
    *,
    champion: str | None = None,
    min_samples: int = 100,
    alpha: float = 0.05,
    probability_threshold: float = 0.95,
    mixing_variance: float = DEFAULT_MIXING_VARIANCE,
    allocation: Mapping[str, float] | None = None,
    reward: str = BINARY,
    sample_ratio_alpha: float = SAMPLE_RATIO_ALPHA,
    tightest_at: int = TIGHTEST_AT,
    unit: str = "invocation",
) -> Decision:
    """Call a winner, or say why not, and what would change the answer.

    Champion: the named variant, by default the first. Reasons, checked in order:
    `single_variant` (nothing to compare), `sample_ratio_mismatch` (with logged propensities:
    the assignments observed do not match them, see bandit.estimates.sample_ratio),
    `too_few_samples` (a variant has fewer than `min_samples` trials), then the leader is
    the variant most likely best; it wins (`winner`) if that probability is >=
    `probability_threshold` and, for a challenger, its always-valid p-value against the
    champion is <= alpha / (number of challengers) (equivalently: its difference's
    confidence sequence at that level excludes 0), or, for the champion, every
    challenger's is and is behind it. Otherwise `no_clear_winner`. `advice` and
    `users_needed` count new users as split by `allocation` (the one new users get now; an
    even split if not given). `tightest_at`: the trials the experiment is planned for, where
    the confidence sequences (the scale-free ones) are tightest. With a winner, the
    differences the call rests on also carry `difference_adjusted` (bandit.stopping).
    `unit`: what a trial is ("invocation" or "user"), as `advice` names it.
    """
    metrics = check_metrics(metrics)
    reward = check_reward(reward)
    names = [m.variant_name for m in metrics]
    champion = names[0] if champion is None else champion
    if champion not in names:
        raise ValueError(f"champion {champion!r} is not among the variants {names}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    base = metrics[names.index(champion)]
    best = probability_best(metrics, reward=reward)
    evidence = _evidence(metrics, champion, reward, mixing_variance, tightest_at)
    level = alpha / max(len(metrics) - 1, 1)
    figures = []
    for m, post in zip(metrics, posteriors(metrics, reward=reward), strict=True):
        name = m.variant_name
        is_champion = name == champion
        observed, z_test = (None, None) if is_champion else _raw_difference(base, m, reward)
        own = evidence.estimates[name]
        ht = horvitz_thompson(m, evidence.trials) if evidence.estimator == HAJEK else None
        diff = None if is_champion else evidence.differences[name]
        figures.append(
            VariantFigures(
                variant_name=name,
                invocation_count=m.invocation_count,
                reward_sum=float(m.reward_sum),
                posterior_mean=post.mean,
                credible_interval=(post.lower, post.upper),
                probability_best=best.probability[name],
                expected_loss=best.expected_loss[name],
                difference=observed,
                z=None if z_test is None else z_test.z,
                z_test_p_value=None if z_test is None else z_test.p_value,
                always_valid_p_value=None if is_champion else evidence.p_values[name],
                estimate=None if own is None else own.value,
                estimate_se=None if own is None else own.standard_error,
                estimate_interval=None if own is None else _bounded(own.interval(alpha), reward),
                horvitz_thompson_estimate=None if ht is None else ht.value,
                horvitz_thompson_se=None if ht is None else ht.standard_error,
                difference_estimate=None if diff is None else diff.value,
                difference_se=None if diff is None else diff.standard_error,
                difference_interval=None
                if diff is None
                else _bounded(diff.interval(level), reward, difference=True),
            )
        )
    check = sample_ratio(metrics, sample_ratio_alpha)
    winner, reason = _verdict(
        metrics,
        champion,
        min_samples=min_samples,
        alpha=alpha,
        probability_threshold=probability_threshold,
        check=check,
        compare=lambda: evidence.against,  # the figures' own: not worked out again
        best=best.probability,
        reward=reward,
    )
    if winner is not None:
        figures = _adjusted(figures, evidence, winner, champion, level)
    shares = dict(allocation) if allocation else {name: 1.0 / len(names) for name in names}
    advice, users_needed = _advice(
        metrics,
        tuple(figures),
        winner,
        reason,
        champion=champion,
        shares=shares,
        min_samples=min_samples,
        level=level,
        mixing_variance=mixing_variance,
        probability_threshold=probability_threshold,
        evidence=evidence,
        reward=reward,
        check=check,
        unit=unit,
    )
    return Decision(
        winner,
        reason,
        champion,
        min_samples,
        alpha,
        probability_threshold,
        mixing_variance,
        tuple(figures),
        advice,
        users_needed,
        reward,
        evidence.estimator,
        _NOTES[evidence.estimator],
        level if len(metrics) > 1 else None,
        None if check is None else asdict(check),
    )


def _adjusted(
    figures: list[VariantFigures], evidence: _Evidence, winner: str, champion: str, level: float
) -> list[VariantFigures]:
    """The figures with `difference_adjusted` set on the differences the call rests on:
    the winner's if a challenger won, every challenger's if the champion did."""
    out = []
    for f in figures:
        diff = evidence.differences.get(f.variant_name)
        if diff is not None and winner in (champion, f.variant_name):
            f = replace(f, difference_adjusted=adjusted_estimate(diff, level, ASSUMED_LOOKS))
        out.append(f)
    return out


def _users_until(passes: Callable[[float], bool]) -> int | None:
    """The fewest more users (to 1 %) for which `passes`; None beyond a billion."""
    if passes(0.0):
        return 0
    high = 100.0
    while not passes(high):
        high *= 2.0
        if high > 1e9:
            return None
    low = high / 2.0 if high > 100.0 else 0.0
    while high - low > max(1.0, 0.01 * high):  # to 1 %: a planning figure
        middle = 0.5 * (low + high)
        low, high = (low, middle) if passes(middle) else (middle, high)
    return math.ceil(high)


def users_to_significance(
    base: VariantMetrics,
    challenger: VariantMetrics,
    shares: tuple[float, float],
    level: float,
    mixing_variance: float = DEFAULT_MIXING_VARIANCE,
) -> int | None:
    """More users until the always-valid p-value of `challenger` against `base` reaches
    `level`, if both rates stay where they are and new users split by `shares`.

    A planning figure, not a promise: the rates will move. None when the observed
    difference is 0 or either variant gets no new users (no number of users would do), or
    beyond a billion.
    """
    if base.invocation_count == 0 or challenger.invocation_count == 0:
        return None
    d = _observed_rate(challenger) - _observed_rate(base)
    if d == 0.0 or min(shares) <= 0.0:
        return None
    (a1, b1), (a2, b2) = beta_parameters(base), beta_parameters(challenger)
    s1, s2 = a1 * b1 / (a1 + b1) ** 2, a2 * b2 / (a2 + b2) ** 2  # posterior-mean variances
    target = -math.log(level)

    def passes(users: float) -> bool:
        v = s1 / (base.invocation_count + shares[0] * users) + s2 / (
            challenger.invocation_count + shares[1] * users
        )
        log_lambda = 0.5 * math.log(v / (v + mixing_variance)) + (
            mixing_variance * d * d / (2.0 * v * (v + mixing_variance))
        )
        return log_lambda >= target

    return _users_until(passes)


def users_to_call(
    base: VariantMetrics,
    challenger: VariantMetrics,
    estimates: tuple[Estimate | None, Estimate | None],
    shares: tuple[float, float],
    level: float,
) -> int | None:
    """`users_to_significance` for the estimated difference and its scale-free sequence:
    each variant's variance shrinks as its trials grow by its share of the new users, the
    estimates stay where they are. None as there."""
    (e1, e2), n1, n2 = estimates, base.invocation_count, challenger.invocation_count
    if e1 is None or e2 is None or n1 == 0 or n2 == 0 or min(shares) <= 0.0:
        return None
    d = e2.value - e1.value
    if d == 0.0:
        return None

    def passes(users: float) -> bool:
        v = e1.variance * n1 / (n1 + shares[0] * users) + e2.variance * n2 / (
            n2 + shares[1] * users
        )
        return mixture_p_value(d, v, e1.trials + round(users), tightest_at=e1.tightest_at) <= level

    return _users_until(passes)


def _advice(
    metrics: tuple[VariantMetrics, ...],
    figures: tuple[VariantFigures, ...],
    winner: str | None,
    reason: str,
    *,
    champion: str,
    shares: Mapping[str, float],
    min_samples: int,
    level: float,
    mixing_variance: float,
    probability_threshold: float,
    evidence: _Evidence,
    reward: str,
    check: SampleRatio | None,
    unit: str,
) -> tuple[str, int | None]:
    """The decision in words a person can act on, and the users still needed if known."""
    by_name = {f.variant_name: f for f in figures}
    if reason == SINGLE_VARIANT:
        return "one variant only: register a challenger to compare it with", None
    if reason == SAMPLE_RATIO_MISMATCH and check is not None:
        worst = min(check.p_values, key=check.p_values.__getitem__)
        return (
            f"sample-ratio mismatch: {worst} has {check.observed[worst]:,.0f} assignments "
            f"re-weighted by their logged propensities where {check.expected:,.0f} are "
            f"expected (always-valid p {check.p_values[worst]:.3g} <= "
            f"{check.alpha / len(metrics):.3g}); assignments are lost, duplicated or logged "
            "with the wrong propensity, so no estimate can be trusted and no winner is called. "
            "Find the cause (events lost in delivery, a stale allocation served, bots); the "
            "flag does not clear with more users",
            None,
        )
    if reason == TOO_FEW_SAMPLES:
        short = [m for m in metrics if m.invocation_count < min_samples]
        needed = [
            (min_samples - m.invocation_count) / shares.get(m.variant_name, 0.0)
            if shares.get(m.variant_name, 0.0) > 0.0
            else math.inf
            for m in short
        ]
        users = None if math.inf in needed else math.ceil(max(needed))
        names = ", ".join(f"{m.variant_name} ({m.invocation_count})" for m in short)
        text = f"every variant needs {min_samples} {unit}s before a call; short: {names}"
        return text + ("" if users is None else f"; about {users:,} more users"), users
    leader = max(figures, key=lambda f: f.probability_best)
    if winner is not None:
        shown = (
            by_name[winner]
            if winner != champion
            else max(
                (f for f in figures if f.variant_name != champion),
                key=lambda f: f.always_valid_p_value or 0.0,
            )
        )
        return (
            f"{winner} wins: best with probability {by_name[winner].probability_best:.3f}, "
            f"always-valid p-value {shown.always_valid_p_value:.3g} <= {level:.3g}; "
            f"stop the test and serve {winner}",
            0,
        )
    base = metrics[[m.variant_name for m in metrics].index(champion)]
    challengers = [m for m in metrics if m.variant_name != champion]
    if leader.variant_name == champion:
        pending = challengers
    else:
        pending = [m for m in challengers if m.variant_name == leader.variant_name]
    exact = reward == BINARY and evidence.estimator == RAW
    estimates = [
        users_to_significance(
            base,
            m,
            (shares.get(champion, 0.0), shares.get(m.variant_name, 0.0)),
            level,
            mixing_variance,
        )
        if exact
        else users_to_call(
            base,
            m,
            (evidence.estimates[champion], evidence.estimates[m.variant_name]),
            (shares.get(champion, 0.0), shares.get(m.variant_name, 0.0)),
            level,
        )
        for m in pending
    ]
    users = None if None in estimates else max(estimates, default=None)
    if leader.probability_best < probability_threshold:
        text = (
            f"no variant is best with probability {probability_threshold} yet "
            f"(the leader, {leader.variant_name}, has {leader.probability_best:.3f})"
        )
    else:
        worst = max(pending, key=lambda m: by_name[m.variant_name].always_valid_p_value or 1.0)
        p_value = by_name[worst.variant_name].always_valid_p_value
        text = (
            f"{leader.variant_name} leads (best with probability "
            f"{leader.probability_best:.3f}) but the always-valid p-value of "
            f"{worst.variant_name} against {champion}, "
            f"{1.0 if p_value is None else p_value:.3g}, is above {level:.3g}"
        )
    if users is None:
        return text + ": too close to tell at the current rates and allocation", None
    return text + f"; about {users:,} more users at the current rates and allocation", users


def verdict(
    metrics: Sequence[VariantMetrics],
    *,
    champion: str | None = None,
    min_samples: int = 100,
    alpha: float = 0.05,
    probability_threshold: float = 0.95,
    mixing_variance: float = DEFAULT_MIXING_VARIANCE,
    best: Mapping[str, float] | None = None,
    reward: str = BINARY,
    sample_ratio_alpha: float = SAMPLE_RATIO_ALPHA,
    tightest_at: int = TIGHTEST_AT,
) -> tuple[str | None, str]:
    """The winner (or None) and the reason of `decision`, without the figures.

    `decision` calls it, and so do the benchmarks after every simulated batch. The
    probabilities of being best (a quadrature; pass `best` if they are known) are computed
    only once some always-valid p-value passes, since no variant can win before that.
    """
    metrics = check_metrics(metrics)
    champion = metrics[0].variant_name if champion is None else champion
    return _verdict(
        metrics,
        champion,
        min_samples=min_samples,
        alpha=alpha,
        probability_threshold=probability_threshold,
        check=sample_ratio(metrics, sample_ratio_alpha),
        compare=lambda: _evidence(metrics, champion, reward, mixing_variance, tightest_at).against,
        best=best,
        reward=reward,
    )


def _verdict(
    metrics: tuple[VariantMetrics, ...],
    champion: str,
    *,
    min_samples: int,
    alpha: float,
    probability_threshold: float,
    check: SampleRatio | None,
    compare: Callable[[], dict[str, tuple[float, float]]],
    best: Mapping[str, float] | None,
    reward: str,
) -> tuple[str | None, str]:
    """`verdict`'s rule. `compare` gives challenger -> (difference, always-valid p-value),
    asked for only past the cheap checks, and `best` worked out only past the p-values."""
    names = [m.variant_name for m in metrics]
    if len(metrics) == 1:
        return None, SINGLE_VARIANT
    if check is not None and check.mismatch:
        return None, SAMPLE_RATIO_MISMATCH
    if any(m.invocation_count < min_samples for m in metrics):
        return None, TOO_FEW_SAMPLES
    against = compare()
    # Bonferroni over the challengers: the chance that any of them passes by luck stays
    # within alpha however many there are (conservative, but valid under any dependence).
    level = alpha / len(against)
    passed = {name for name, (_, p) in against.items() if p <= level}
    champion_ahead = all(d < 0.0 for d, _ in against.values()) and len(passed) == len(against)
    if not champion_ahead and not any(against[name][0] > 0.0 for name in passed):
        return None, NO_CLEAR_WINNER
    if best is None:
        best = probability_best(metrics, reward=reward).probability
    leader = max(names, key=lambda name: best[name])
    if best[leader] < probability_threshold:
        return None, NO_CLEAR_WINNER
    if leader == champion:
        significant = champion_ahead
    else:
        significant = leader in passed and against[leader][0] > 0.0
    return (leader, WINNER) if significant else (None, NO_CLEAR_WINNER)
