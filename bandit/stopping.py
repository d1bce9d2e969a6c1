"""The estimated difference at the call, adjusted for having stopped when it was high.

A winner is called the first time 0 leaves the difference's confidence sequence, and that
happens more readily when the estimate is, by luck, above the truth: at the call every
estimate is biased upward (the winner's curse of a sequential test), by about a third of a
standard error in the benchmarks, however unbiased it is at a fixed sample size.

The adjustment is Whitehead's (J. Whitehead, "On the bias of maximum likelihood estimation
following a sequential test", Biometrika 73, 1986): the theta whose expected estimate at the
call, over the stopping rule, is the estimate observed. Here conditionally on the call
being for the side it was (Fan, DeMets, Lan, "Conditional bias of point estimates following
a group sequential test", J. Biopharm. Stat. 14, 2004), since it is reported only then.

Model, in units of the current standard error: information grows in proportion to the
trials, so with t = N_j / N_now the scaled sum is u t + B(t), B a Brownian motion, the
z-statistic (u t + B(t)) / sqrt(t) and the estimate (u t + B(t)) / t. The boundary is the
very one the call uses: the confidence sequence's half-width is se * c(x), with
c(x) = sqrt(2 (x + 1) / x log(sqrt(x + 1) / alpha)) and x = tau² / variance (N rho² for the
scale-free sequence), and x grows with the information, so at look j it is c(x_now t_j).
Looks are equally spaced, `looks` of them up to now, and go on at that spacing up to
`HORIZON_FACTOR` times the current trials. E_u[estimate at the call | called upward] is
computed on fixed-seed paths (common random numbers make it a step function in u that
rises with it) and solved for u by bisection. Standard library only (the stats Lambda).

Measured (bench/decisions.py --only lift, 500 runs a row): the bias at the call within 2
Monte Carlo se of 0 for binary rewards and continuous ones on a 50/50 split, 13-19 % of it
left for continuous rewards under the default allocation; RMSE 11-33 % lower. The horizon
matters: at 2x the trials every row was overcorrected, at 8x more bias was left; 30 assumed
looks and the true count (one per batch of 1,000) gave the same picture.
Those runs stop at 100,000 users, and the figure depends on that cut: a call's estimate
sits on the boundary, so its error is set by when it comes, and with the runs kept until
they call (400,000 users) three continuous rows were overcorrected instead (BENCHMARKS).
Told the runs' horizon and their true looks, this adjustment overcorrects the continuous
rows by 14-18 Monte Carlo se (a late call has no root near it: given a call by the horizon,
every truth's expected estimate at the call is above a late call's); the conditional MLE
and the stage-wise median-unbiased estimate did no better, and an estimator fitted to be
conditionally unbiased cost 22-50 % more RMSE on the continuous rows
(bench/call_estimates.py).
"""

from __future__ import annotations

import math
import random
from functools import lru_cache

from bandit.estimates import Estimate, mixing_ratio

PATHS = 600
# The service decides at every aggregation but keeps no count of them: the decision assumes
# this many equally spaced looks up to now (measured against the true count in BENCHMARKS).
ASSUMED_LOOKS = 30
HORIZON_FACTOR = 4
_SEED = 20_260_512
_BRACKET = 6.0  # the root lies within this many standard errors below the estimate
_STEP = 0.25


def boundary(x: float, alpha: float) -> float:
    """The confidence sequence's half-width in standard errors at mixing ratio x."""
    return math.sqrt(2.0 * (x + 1.0) / x * math.log(math.sqrt(x + 1.0) / alpha))


@lru_cache(maxsize=8)
def _paths(looks: int, total: int) -> tuple[tuple[float, ...], ...]:
    """PATHS Brownian paths at t = j / looks, j = 1..total (fixed seed: deterministic)."""
    rng = random.Random(_SEED)
    step = math.sqrt(1.0 / looks)
    out = []
    for _ in range(PATHS):
        b, path = 0.0, []
        for _ in range(total):
            b += rng.gauss() * step
            path.append(b)
        out.append(tuple(path))
    return tuple(out)


def expected_at_call(u: float, x_now: float, alpha: float, looks: int) -> float | None:
    """E[estimate / se_now at the call | the call is upward] under drift u (se units); None
    if no path is called upward."""
    total = max(looks, round(looks * HORIZON_FACTOR))
    times = [(j + 1) / looks for j in range(total)]
    edges = [boundary(x_now * t, alpha) * math.sqrt(t) for t in times]  # on the sum's scale
    ups, found = 0.0, 0
    for path in _paths(looks, total):
        for t, edge, b in zip(times, edges, path, strict=True):
            s = u * t + b
            if s >= edge:
                ups += s / t
                found += 1
                break
            if s <= -edge:
                break
    return ups / found if found else None


def adjusted_difference(
    value: float, standard_error: float, x_now: float, alpha: float, looks: int
) -> float:
    """Whitehead's bias-adjusted estimate of a difference called significant (either side).

    `value` and `standard_error` as at the call; `x_now` the confidence sequence's mixing
    ratio now; `alpha` the call's level; `looks` how many looks the call saw (equally
    spaced). The value itself when it is not outside the sequence (no call to adjust for).
    """
    if not standard_error > 0.0 or looks < 1:
        return value
    z = value / standard_error
    if abs(z) < boundary(x_now, alpha):
        return value
    sign = 1.0 if z > 0.0 else -1.0
    z = abs(z)

    def above(u: float) -> bool:
        m = expected_at_call(u, x_now, alpha, looks)
        return m is not None and m >= z

    # Far below the truth a path is called upward only early, when the estimate is
    # large, so the expectation is not monotone over all u: take the root nearest the
    # estimate, stepping down from it.
    high = z
    if not above(high):
        return value
    low = high - _STEP
    while above(low):
        high, low = low, low - _STEP
        if low < z - _BRACKET:
            return sign * high * standard_error
    while high - low > 0.01:  # a hundredth of a standard error
        middle = 0.5 * (low + high)
        low, high = (low, middle) if above(middle) else (middle, high)
    return sign * 0.5 * (low + high) * standard_error


def adjusted_estimate(estimate: Estimate, alpha: float, looks: int) -> float:
    """`adjusted_difference` for a difference `Estimate` as the decision has it."""
    x_now = mixing_ratio(
        estimate.variance, estimate.trials, estimate.mixing_variance, estimate.tightest_at
    )
    return adjusted_difference(estimate.value, estimate.standard_error, x_now, alpha, looks)
