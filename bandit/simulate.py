"""Simulated A/B tests: Bernoulli variants, our strategies, cumulative regret, decisions.

For benchmarks and the demo, not the request path (uses numpy). Strategies are driven
through their public API, with the product's warm-up gate (`select`), so the regret
measured is the regret users would see.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.metrics import VariantMetrics
from bandit.selection import deciding_strategy, select
from bandit.strategy import Strategy
from bandit.thompson import ThompsonSampling


def kl_bernoulli(p: float, q: float) -> float:
    """Kullback–Leibler divergence KL(Bernoulli(p) || Bernoulli(q)), 0 < q < 1."""

    def term(x: float, y: float) -> float:
        return 0.0 if x == 0.0 else x * math.log(x / y)

    return term(p, q) + term(1.0 - p, 1.0 - q)


def lai_robbins_bound(means: Sequence[float], horizon: int) -> float:
    """Asymptotic lower bound on the expected regret of any consistent policy:
    ln T * sum over suboptimal arms of (mu* - mu_i) / KL(mu_i, mu*).

    Lai, Robbins, "Asymptotically efficient adaptive allocation rules", Advances in
    Applied Mathematics 6 (1985), Theorem 2 (for Bernoulli arms).
    """
    best = max(means)
    return math.log(horizon) * sum(
        (best - mu) / kl_bernoulli(mu, best) for mu in means if mu < best
    )


@dataclass(frozen=True)
class BernoulliBandit:
    """K variants; a user shown variant i converts with probability means[i]."""

    means: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.means or any(not 0.0 <= mu <= 1.0 for mu in self.means):
            raise ValueError(f"means must be a non-empty list of probabilities, got {self.means}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"variant{i}" for i in range(len(self.means)))

    @property
    def gaps(self) -> tuple[float, ...]:
        best = max(self.means)
        return tuple(best - mu for mu in self.means)

    def lai_robbins_bound(self, horizon: int) -> float:
        return lai_robbins_bound(self.means, horizon)


@dataclass(frozen=True)
class RunResult:
    strategy: str
    horizon: int
    batch_size: int
    seed: int
    pulls: tuple[int, ...]
    cumulative_regret: np.ndarray  # expected (pseudo-)regret after each user
    path: str  # "select", or "sample" for the instant-feedback Thompson fast path

    @property
    def regret(self) -> float:
        return float(self.cumulative_regret[-1])


def run(
    strategy: Strategy,
    bandit: BernoulliBandit,
    horizon: int,
    *,
    seed: int,
    batch_size: int = 1,
    warmup: int = 0,
) -> RunResult:
    """Serve `horizon` users one by one; the strategy sees the metrics as of the last refresh.

    batch_size = 1 is instant feedback; batch_size = B refreshes the metrics every B users,
    as when the event log is aggregated every minute. Each user is assigned by
    `select(strategy, metrics, rng, warmup)`, except for ThompsonSampling with instant
    feedback past the warm-up: there the metrics change on every user, so it calls
    `ThompsonSampling.sample` (one posterior draw per variant, argmax), which is distributed
    exactly as `choose` without recomputing the allocation each time.
    Regret is the expected regret sum of (mu* - mu_pick), which has lower variance than the
    realised one and is what the Lai–Robbins bound is about.
    """
    if horizon < 1 or batch_size < 1:
        raise ValueError("horizon and batch_size must be >= 1")
    rng = random.Random(seed)
    conversions = np.random.default_rng(seed).random(horizon)  # user t converts if u_t < mu
    names = bandit.names
    index = {name: i for i, name in enumerate(names)}
    means, gaps = bandit.means, bandit.gaps
    k = len(names)
    invocations, rewards = [0] * k, [0] * k
    visible = [VariantMetrics(name) for name in names]
    metrics = tuple(visible)
    fast = isinstance(strategy, ThompsonSampling) and batch_size == 1
    picks = [0] * horizon
    for t in range(horizon):
        if batch_size > 1 and t % batch_size == 0 and t:
            metrics = tuple(
                VariantMetrics(names[i], 1.0, invocations[i], rewards[i], float(rewards[i]))
                for i in range(k)
            )
        if fast and min(invocations) > warmup:
            pick = index[strategy.sample(metrics, rng)]
        else:
            pick = index[select(strategy, metrics, rng, warmup).variant_name]
        invocations[pick] += 1
        if conversions[t] < means[pick]:
            rewards[pick] += 1
        picks[t] = pick
        if batch_size == 1:
            visible[pick] = VariantMetrics(
                names[pick], 1.0, invocations[pick], rewards[pick], float(rewards[pick])
            )
            metrics = tuple(visible)
    regret = np.cumsum(np.asarray(gaps)[np.asarray(picks)])
    return RunResult(
        strategy.name,
        horizon,
        batch_size,
        seed,
        tuple(invocations),
        regret,
        "sample" if fast else "select",
    )


@dataclass(frozen=True, slots=True)
class Experiment:
    """How one simulated experiment ended, and how the estimate the call rests on fared.

    The difference tracked is variant 1's against the champion (variant 0), the one the
    call is about in a two-variant test; its truth is `truth`. `error` and `raw_error` are
    the Hajek and raw estimates minus the truth when the experiment ended (the call, or the
    horizon), `se` the Hajek estimate's reported standard error; `covered_at_end` whether the
    confidence sequence (at the call's level) held the truth then, `covered_throughout`
    whether it did at every look.
    """

    users: int | None  # users served when a winner was called; None if none by the horizon
    winner: int | None  # index of the variant called
    regret: float  # expected regret over the horizon: the experiment, then the winner
    truth: float = 0.0
    error: float | None = None
    raw_error: float | None = None
    se: float | None = None
    covered_at_end: bool | None = None
    covered_throughout: bool | None = None
    # The bias-adjusted estimate at the call (bandit.stopping) minus the truth; None
    # without a call.
    adjusted_error: float | None = None


@dataclass(frozen=True)
class LogNormalRevenue:
    """Continuous rewards: a converting user's revenue ~ LogNormal(mu, sigma), so each
    trial's outcome is 0 (no conversion) or that revenue; the mean outcome per trial is the
    conversion rate times exp(mu + sigma² / 2)."""

    mu: float
    sigma: float

    @property
    def mean(self) -> float:
        return math.exp(self.mu + 0.5 * self.sigma**2)


def run_experiment(
    strategy: Strategy,
    bandit: BernoulliBandit,
    *,
    seed: object,
    horizon: int = 100_000,
    batch_size: int = 1_000,
    warmup: int = 0,
    stop: bool = True,
    revenue: LogNormalRevenue | None = None,
    adjust_looks: int | None = None,
) -> Experiment:
    """An experiment as the product runs it, with the decision asked after every batch.

    Before each batch the allocation is the one `/stats` reports (the strategy behind the
    warm-up gate); the batch is one multinomial draw of assignments and one binomial draw
    of conversions per variant (`seed` seeds numpy), and, with `revenue`, one log-normal
    draw per conversion. The counters are the ones the service keeps with the "user" unit:
    each assignment carries the propensity it was drawn with (the allocation of its batch),
    so the inverse-propensity sums are exact. After each batch `bandit.stats.verdict`, the
    rule of `/stats`' decision with its defaults, is asked for a winner. With `stop`, every
    user after the call gets the winner; without, the strategy keeps allocating (a plain
    bandit) and the first call is still recorded. The estimate at the call is adjusted
    (bandit.stopping) with the looks it saw, or as if it saw `adjust_looks`.
    """
    from bandit.estimates import decision_estimates, difference, raw
    from bandit.metrics import BINARY, CONTINUOUS
    from bandit.stats import verdict  # the decision, as /stats makes it
    from bandit.stopping import adjusted_estimate

    reward = BINARY if revenue is None else CONTINUOUS
    scale = 1.0 if revenue is None else revenue.mean
    rng = np.random.default_rng(seed)
    names = bandit.names
    k = len(names)
    rates = np.asarray(bandit.means)
    gaps = np.asarray(bandit.gaps) * scale
    truth = float(rates[1] - rates[0]) * scale if k > 1 else 0.0
    level = 0.05 / max(k - 1, 1)
    invocations = np.zeros(k, dtype=np.int64)
    successes = np.zeros(k, dtype=np.int64)
    # Per variant: sum y, sum y², sum 1/p, sum 1/p², sum y/p, sum y/p², sum y²/p².
    sums = np.zeros((7, k))
    metrics = tuple(VariantMetrics(name) for name in names)
    regret = 0.0
    called: tuple[int, int] | None = None
    covered_throughout = True
    estimate = None
    for served in range(batch_size, horizon + 1, batch_size):
        allocation = deciding_strategy(strategy, metrics, warmup).allocation(metrics)
        shares = np.array([allocation[name] for name in names])
        assigned = rng.multinomial(batch_size, shares / shares.sum())
        converted = rng.binomial(assigned, rates)
        if revenue is None:
            y, y2 = converted.astype(float), converted.astype(float)
        else:
            draws = [rng.lognormal(revenue.mu, revenue.sigma, c) for c in converted]
            y = np.array([d.sum() for d in draws])
            y2 = np.array([(d * d).sum() for d in draws])
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = np.where(shares > 0.0, 1.0 / shares, 0.0)
        sums += np.stack(
            [
                y,
                y2,
                assigned * inverse,
                assigned * inverse**2,
                y * inverse,
                y * inverse**2,
                y2 * inverse**2,
            ]
        )
        invocations += assigned
        successes += converted
        regret += float(assigned @ gaps)
        metrics = tuple(
            VariantMetrics(name, 1.0, int(n), int(c), *map(float, column))
            for name, n, c, column in zip(names, invocations, successes, sums.T, strict=True)
        )
        if k > 1:
            _, n, estimates = decision_estimates(metrics, reward)  # as the decision has them
            estimate = difference(estimates[names[1]], estimates[names[0]])
            if estimate is not None:
                lower, upper = estimate.interval(level)
                covered_throughout &= lower <= truth <= upper
        if called is None:
            winner, _ = verdict(metrics, reward=reward)
            if winner is not None:
                called = (served, names.index(winner))
                if stop:
                    regret += (horizon - served) * float(gaps[called[1]])
                    break
    outcome: dict = {"truth": truth}
    if estimate is not None:
        n = int(invocations.sum())
        lower, upper = estimate.interval(level)
        raw_estimate = difference(raw(metrics[1], n, reward), raw(metrics[0], n, reward))
        outcome.update(
            error=estimate.value - truth,
            raw_error=None if raw_estimate is None else raw_estimate.value - truth,
            se=estimate.standard_error,
            covered_at_end=lower <= truth <= upper,
            covered_throughout=covered_throughout,
        )
    if called is None:
        return Experiment(None, None, regret, **outcome)
    if estimate is not None:
        looks = adjust_looks or called[0] // batch_size  # the looks the call saw
        outcome["adjusted_error"] = adjusted_estimate(estimate, level, looks) - truth
    return Experiment(called[0], called[1], regret, **outcome)
