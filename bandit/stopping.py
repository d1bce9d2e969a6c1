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
import threading
from array import array
from bisect import bisect_left
from functools import lru_cache
from itertools import accumulate

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


# The seeded stream of standard normal draws, drawn once and grown as longer paths need it.
# Path p of `total` looks is draws p * total to (p + 1) * total of this one stream, as if
# each path drew its own from one generator: the same paths as drawn afresh, but each new
# look count (a decision at its true looks, the stopping test's 84 of them) costs additions
# instead of PATHS * total calls of random.gauss (those were two thirds of that test's time).
_normals = array("d")  # 8 bytes a draw: 0.6 MB for the service's 30 looks
_normal_source = random.Random(_SEED)
_normals_lock = threading.Lock()


def _standard_normals(count: int) -> array[float]:
    """The stream's first `count` draws (or more): the same for every caller and thread."""
    with _normals_lock:
        draw = _normal_source.gauss
        _normals.extend(draw() for _ in range(count - len(_normals)))
        return _normals


@lru_cache(maxsize=8)
def _paths(looks: int, total: int) -> tuple[tuple[float, ...], ...]:
    """PATHS Brownian paths at t = j / looks, j = 1..total (fixed seed: deterministic)."""
    normals = _standard_normals(PATHS * total)
    step = math.sqrt(1.0 / looks)
    return tuple(
        tuple(accumulate(g * step for g in normals[start : start + total]))
        for start in range(0, PATHS * total, total)
    )


class _FirstCrossings:
    """Where each path first leaves the boundary, under any drift u, read along each path
    only as far as the drifts asked so far needed.

    At look t a path crosses up when u >= (edge - b) / t and down when u <= (-edge - b) / t.
    Under u its first upward crossing is the first look whose up-threshold is <= u: one of
    the looks where that threshold reaches a new low (a handful per path), and the call is
    upward when u is above every down-threshold before that look. So a path read once
    answers every later drift by a bisection over those lows, instead of a walk along it
    from the start for each drift (a bisection asks about ten: the stopping test made 102
    million steps of such walks, 85 % of its time once the paths were drawn once). The
    thresholds are the walk's comparisons solved for u: the same answers (bit for bit in
    the 1,020 adjustments compared, BENCHMARKS "The stopping test's 25 s").
    """

    def __init__(self, x_now: float, alpha: float, looks: int) -> None:
        total = max(looks, round(looks * HORIZON_FACTOR))
        self.times = [(j + 1) / looks for j in range(total)]
        # The boundary on the sum's scale.
        self.edges = [boundary(x_now * t, alpha) * math.sqrt(t) for t in self.times]
        self.paths = _paths(looks, total)
        count = len(self.paths)
        self.read = [0] * count  # looks read so far, per path
        self.highest_down = [-math.inf] * count  # over the looks read
        # Per path, at each new low of the up-threshold: minus that low (rising, for
        # bisect), the highest down-threshold before it, its look's t and the path's sum.
        self.lows: list[list[float]] = [[] for _ in range(count)]
        self.downs_before: list[list[float]] = [[] for _ in range(count)]
        self.at: list[list[tuple[float, float]]] = [[] for _ in range(count)]

    def _read_on(self, p: int, u: float) -> int | None:
        """Reads path p on until it crosses under u: its new low's index if upward."""
        path, times, edges = self.paths[p], self.times, self.edges
        lows, downs_before, at = self.lows[p], self.downs_before[p], self.at[p]
        highest_down = self.highest_down[p]
        lowest_up = -lows[-1] if lows else math.inf
        j, end, found = self.read[p], len(path), None
        while j < end:
            t, edge, b = times[j], edges[j], path[j]
            j += 1
            up = (edge - b) / t
            if up < lowest_up:
                lowest_up = up
                lows.append(-up)
                downs_before.append(highest_down)
                at.append((t, b))
            down = (-edge - b) / t
            if down > highest_down:
                highest_down = down
            if up <= u:
                found = len(lows) - 1
                break
            if highest_down >= u:
                break
        self.read[p], self.highest_down[p] = j, highest_down
        return found

    def expected(self, u: float) -> float | None:
        """E[estimate / se_now at the call | the call is upward] under drift u."""
        ups, found = 0.0, 0
        for p, lows in enumerate(self.lows):
            first = bisect_left(lows, -u)  # the first look read whose up-threshold is <= u
            if first == len(lows):
                if self.highest_down[p] >= u:
                    continue  # down before any look read could cross up under u
                first = self._read_on(p, u)
                if first is None:
                    continue
            if u > self.downs_before[p][first]:
                t, b = self.at[p][first]
                ups += (u * t + b) / t
                found += 1
        return ups / found if found else None


def expected_at_call(u: float, x_now: float, alpha: float, looks: int) -> float | None:
    """E[estimate / se_now at the call | the call is upward] under drift u (se units); None
    if no path is called upward."""
    return _FirstCrossings(x_now, alpha, looks).expected(u)


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

    crossings = _FirstCrossings(x_now, alpha, looks)

    def above(u: float) -> bool:
        m = crossings.expected(u)
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
