"""Off-policy evaluation: what another policy would have earned, from the log of this one.

Every logged invocation carries the probability (propensity) with which its variant was
drawn. Re-weighting each logged reward by target probability / logged propensity gives an
unbiased estimate of the reward per invocation any other policy would have earned, as long
as the logging policy gave every variant the target plays a positive probability.

Four estimators, as compared by Dudík, Langford, Li, "Doubly Robust Policy Evaluation and
Learning" (ICML 2011): the direct method (a reward model, no weights), inverse propensity
scoring, self-normalised IPS (Swaminathan, Joachims 2015), and doubly robust (the model,
corrected by the weighted residuals). Each comes with a normal 95 % interval from its
per-event influence terms, kept in log order so that an anytime-valid confidence sequence
can later be computed from the same terms (pass it as `interval`).

Pure numpy; no I/O. `abtest.offpolicy` reads the event log into a `Log`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from bandit.metrics import VariantMetrics
from bandit.strategy import Strategy

DIRECT_METHOD = "DM"
IPS = "IPS"
SNIPS = "SNIPS"
DOUBLY_ROBUST = "DR"
ESTIMATORS = (DIRECT_METHOD, IPS, SNIPS, DOUBLY_ROBUST)

# A target's probabilities of one event must sum to 1 within this (float sums of a few terms).
SUM_TOLERANCE = 1e-6
# Below this effective sample size the normal interval is not to be trusted: the central
# limit theorem needs many comparable terms, and a few heavy weights are not that.
MIN_EFFECTIVE_SAMPLE_SIZE = 100
# Below this share of the events, the weights concentrate on a few events: the target
# plays what the log rarely played.
MIN_EFFECTIVE_SHARE = 0.05
# Above this, one event's weight (1 / a propensity) can swing the estimate by itself.
MAX_WEIGHT = 100.0
# The weights average 1 in expectation; further than this many standard errors away, the
# logged propensities are not the probabilities the variants were drawn with.
WEIGHT_MEAN_Z = 4.0


class OffPolicyError(ValueError):
    """Input the estimators cannot use; the message names the event and the problem."""


@dataclass(frozen=True)
class Log:
    """Logged invocations in time order: the variant served, its reward, its propensity."""

    variants: tuple[str, ...]
    actions: np.ndarray  # index into variants
    rewards: np.ndarray
    propensities: np.ndarray

    @classmethod
    def of(
        cls,
        variants: Sequence[str],
        served: Sequence[str],
        rewards: Sequence[float],
        propensities: Sequence[float | None],
    ) -> Log:
        """A checked log; OffPolicyError naming the first bad event otherwise."""
        variants = tuple(variants)
        index = {name: i for i, name in enumerate(variants)}
        if len(index) != len(variants) or not variants:
            raise OffPolicyError(f"variants must be distinct names, got {list(variants)}")
        if not len(served) == len(rewards) == len(propensities):
            raise OffPolicyError(
                f"served, rewards and propensities differ in length: "
                f"{len(served)}, {len(rewards)}, {len(propensities)}"
            )
        actions = np.empty(len(served), dtype=np.int64)
        for i, name in enumerate(served):
            if name not in index:
                raise OffPolicyError(f"event {i} served unknown variant {name!r}")
            actions[i] = index[name]
        if any(p is None for p in propensities):
            first = next(i for i, p in enumerate(propensities) if p is None)
            raise OffPolicyError(f"event {first} was logged without a propensity")
        log = cls(
            variants,
            actions,
            np.asarray(rewards, dtype=np.float64),
            np.asarray(propensities, dtype=np.float64),
        )
        log.check()
        return log

    def __len__(self) -> int:
        return len(self.actions)

    def check(self) -> None:
        """OffPolicyError for a propensity outside (0, 1] or a reward that is not finite."""
        bad = np.flatnonzero(~((self.propensities > 0.0) & (self.propensities <= 1.0)))
        if bad.size:
            i = int(bad[0])
            raise OffPolicyError(
                f"event {i} has propensity {float(self.propensities[i])!r}, not in (0, 1]"
                + (" (logged without one)" if math.isnan(self.propensities[i]) else "")
            )
        bad = np.flatnonzero(~np.isfinite(self.rewards))
        if bad.size:
            i = int(bad[0])
            raise OffPolicyError(
                f"event {i} has reward {float(self.rewards[i])!r}, not a finite number"
            )
        if len(self) < 2:
            raise OffPolicyError(f"the log has {len(self)} invocation(s): at least 2 are needed")


# What a target policy may be: a variant's name (always that variant), "uniform", one
# allocation for every event ({variant: probability}), an (events x variants) array, or
# a callable from the event's index to its allocation (mapping or sequence).
Policy = str | Mapping[str, float] | np.ndarray | Callable[[int], Mapping[str, float] | Sequence]
UNIFORM = "uniform"


def target_probabilities(log: Log, policy: Policy) -> np.ndarray:
    """The (events x variants) matrix of the target's probabilities, checked to sum to 1."""
    n, k = len(log), len(log.variants)
    if isinstance(policy, str):
        if policy == UNIFORM:
            return np.full((n, k), 1.0 / k)
        if policy not in log.variants:
            raise OffPolicyError(
                f"policy {policy!r} is neither 'uniform' nor a variant of the log "
                f"({', '.join(log.variants)})"
            )
        matrix = np.zeros((n, k))
        matrix[:, log.variants.index(policy)] = 1.0
        return matrix
    if isinstance(policy, Mapping):
        matrix = np.tile(_row(log, policy, "the policy"), (n, 1))
    elif isinstance(policy, np.ndarray):
        matrix = np.asarray(policy, dtype=np.float64)
        if matrix.shape != (n, k):
            raise OffPolicyError(f"policy matrix has shape {matrix.shape}, expected {(n, k)}")
    elif callable(policy):
        matrix = np.array([_row(log, policy(i), f"the policy at event {i}") for i in range(n)])
    else:
        raise OffPolicyError(f"a policy cannot be a {type(policy).__name__}")
    _check_rows(matrix)
    return matrix


def _row(log: Log, probabilities: Mapping[str, float] | Sequence, what: str) -> np.ndarray:
    if isinstance(probabilities, Mapping):
        unknown = set(probabilities) - set(log.variants)
        if unknown:
            raise OffPolicyError(f"{what} names unknown variant(s) {sorted(unknown)}")
        return np.array([float(probabilities.get(name, 0.0)) for name in log.variants])
    row = np.asarray(probabilities, dtype=np.float64)
    if row.shape != (len(log.variants),):
        raise OffPolicyError(
            f"{what} gives {row.size} probabilities for {len(log.variants)} variants"
        )
    return row


def _check_rows(matrix: np.ndarray) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(matrix) & (matrix >= 0.0), axis=1))
    if bad.size:
        i = int(bad[0])
        raise OffPolicyError(f"target probabilities of event {i} are {matrix[i].tolist()}")
    sums = matrix.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
    if bad.size:
        i = int(bad[0])
        raise OffPolicyError(f"target probabilities of event {i} sum to {sums[i]:.6g}, not 1")


def strategy_probabilities(log: Log, strategy: Strategy, *, batch_size: int = 1000) -> np.ndarray:
    """What `strategy` would have allocated at each event, replayed on the log's own counters.

    The counters are refreshed every `batch_size` events (as aggregation does every minute)
    from the events before them, with their rewards: the replay sees the log's outcomes,
    not outcomes of its own choices, which is what an off-policy estimate reweights.
    """
    if batch_size < 1:
        raise OffPolicyError(f"batch_size must be >= 1, got {batch_size}")
    n, k = len(log), len(log.variants)
    matrix = np.empty((n, k))
    invocations = np.zeros(k, dtype=np.int64)
    rewards = np.zeros(k)
    conversions = np.zeros(k)
    for start in range(0, n, batch_size):
        metrics = tuple(
            VariantMetrics(
                name, 1.0, int(invocations[j]), int(conversions[j]), max(float(rewards[j]), 0.0)
            )
            for j, name in enumerate(log.variants)
        )
        allocation = strategy.allocation(metrics)
        stop = min(start + batch_size, n)
        matrix[start:stop] = [allocation[name] for name in log.variants]
        chunk = slice(start, stop)
        invocations += np.bincount(log.actions[chunk], minlength=k)
        rewards += np.bincount(log.actions[chunk], weights=log.rewards[chunk], minlength=k)
        converted = (log.rewards[chunk] > 0).astype(np.float64)
        conversions += np.bincount(log.actions[chunk], weights=converted, minlength=k)
    return matrix


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of the target: reward per invocation, interval, diagnostics."""

    estimator: str
    value: float
    std_error: float
    low: float
    high: float
    effective_sample_size: float  # of the importance weights: (sum w)^2 / sum w^2
    events: int
    warnings: tuple[str, ...] = field(default=())

    @property
    def reliable(self) -> bool:
        return not self.warnings


# (value, influence terms in log order, level) -> (standard error, low, high)
Interval = Callable[[float, np.ndarray, float], tuple[float, float, float]]


def normal_interval(
    value: float, influence: np.ndarray, level: float
) -> tuple[float, float, float]:
    """value ± z · sd(influence) / sqrt(n): the fixed-sample interval, valid at one look."""
    se = float(np.std(influence, ddof=1) / math.sqrt(influence.size))
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return se, value - z * se, value + z * se


def weighted_means(log: Log) -> np.ndarray:
    """Each variant's reward mean with its events weighted by 1 / propensity (NaN if unserved).

    The direct method's reward model. A plain mean is biased under adaptive allocation (a
    variant's unlucky early draws cut its later traffic, so they are over-represented);
    weighting by the inverse propensity makes each variant's mean consistent.
    """
    k = len(log.variants)
    inverse = 1.0 / log.propensities
    weight = np.bincount(log.actions, weights=inverse, minlength=k)
    total = np.bincount(log.actions, weights=inverse * log.rewards, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0.0, total / weight, np.nan)


def evaluate(
    log: Log,
    policy: Policy,
    *,
    level: float = 0.95,
    reward_model: np.ndarray | None = None,
    interval: Interval = normal_interval,
) -> tuple[Estimate, ...]:
    """DM, IPS, SNIPS and DR estimates of the target's reward per invocation.

    `reward_model` is an (events x variants) matrix of predicted rewards; by default each
    variant's propensity-weighted mean (`weighted_means`), whose own estimation error the
    direct method's interval then includes. A variant the log never served gets the
    overall weighted mean, with a warning on every estimate that gives it probability.
    """
    if not 0.0 < level < 1.0:
        raise OffPolicyError(f"level must be in (0, 1), got {level}")
    target = target_probabilities(log, policy)
    n, k = target.shape
    events = np.arange(n)
    a, r, p = log.actions, log.rewards, log.propensities
    weights = target[events, a] / p
    ess = float(weights.sum() ** 2 / np.square(weights).sum()) if weights.any() else 0.0

    common: list[str] = []
    means = weighted_means(log)
    unserved = [log.variants[j] for j in range(k) if np.isnan(means[j]) and target[:, j].any()]
    if unserved:
        common.append(
            f"the target plays {', '.join(unserved)}, which the log never served: "
            "no estimator sees its rewards"
        )
    pooled = float(np.sum(r / p) / np.sum(1.0 / p))
    means = np.where(np.isnan(means), pooled, means)
    fitted = reward_model is None
    if fitted:
        predicted, at_served = target @ means, means[a]
    else:
        model = np.asarray(reward_model, dtype=np.float64)
        if model.shape != (n, k) or not np.all(np.isfinite(model)):
            raise OffPolicyError(f"reward_model must be a finite {(n, k)} matrix")
        predicted, at_served = np.einsum("ij,ij->i", target, model), model[events, a]
    weight_warnings = common + _weight_warnings(
        weights, ess, p, target[events, a], covered=not unserved
    )

    dm = float(predicted.mean())
    dm_influence = predicted - dm
    if fitted:
        # The model's own error: each variant's weighted mean moves with its events.
        share = np.bincount(a, weights=1.0 / p, minlength=k) / n
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(share > 0.0, target.mean(axis=0) / share, 0.0)
        dm_influence = dm_influence + scale[a] * (r - means[a]) / p

    ips_terms = weights * r
    ips = float(ips_terms.mean())
    snips = float(ips_terms.sum() / weights.sum()) if weights.any() else math.nan
    snips_influence = (
        weights * (r - snips) / weights.mean() if weights.any() else np.full(n, math.nan)
    )
    dr_terms = predicted + weights * (r - at_served)
    dr = float(dr_terms.mean())

    def estimate(name: str, value: float, influence: np.ndarray, notes: list[str]) -> Estimate:
        se, low, high = interval(value, influence, level)
        return Estimate(name, value, se, low, high, ess, n, tuple(notes))

    return (
        estimate(DIRECT_METHOD, dm, dm_influence, common),
        estimate(IPS, ips, ips_terms - ips, weight_warnings),
        estimate(SNIPS, snips, snips_influence, weight_warnings),
        estimate(DOUBLY_ROBUST, dr, dr_terms - dr, weight_warnings),
    )


def _weight_warnings(
    weights: np.ndarray,
    ess: float,
    propensities: np.ndarray,
    on_served: np.ndarray,
    *,
    covered: bool,
) -> list[str]:
    """Why the importance weights make an estimate unreliable, if they do.

    `on_served` is the target's probability of each event's served variant. Where the
    target plays other variants, they had at most 1 - propensity from the logging policy,
    so one of them would have had a weight of at least (1 - on_served) / (1 - propensity)
    had it been drawn: that bound shows a starved variant even when it was never drawn.
    """
    n = weights.size
    notes = []
    if ess < MIN_EFFECTIVE_SAMPLE_SIZE:
        notes.append(
            f"effective sample size {ess:.1f} < {MIN_EFFECTIVE_SAMPLE_SIZE}: "
            "too few events carry the weight for a normal interval"
        )
    elif ess < MIN_EFFECTIVE_SHARE * n:
        notes.append(
            f"effective sample size {ess:.0f} is {ess / n:.1%} of {n} events: "
            "the target plays what the log rarely served"
        )
    heaviest = int(np.argmax(weights))
    off = 1.0 - on_served
    with np.errstate(divide="ignore", invalid="ignore"):
        unseen = np.where(off > 1e-12, off / (1.0 - propensities), 0.0)
    starved = int(np.argmax(unseen))
    if weights[heaviest] > MAX_WEIGHT:
        notes.append(
            f"event {heaviest} has weight {weights[heaviest]:.3g} (logged propensity "
            f"{propensities[heaviest]:.3g}): a variant was starved; "
            "an exploration floor in the logging policy bounds the weights"
        )
    elif unseen[starved] > MAX_WEIGHT:
        notes.append(
            f"at event {starved} the logging policy left at most "
            f"{1.0 - propensities[starved]:.3g} to the variants the target plays there "
            f"(a weight of {unseen[starved]:.3g} or more, had one been drawn): a variant was "
            "starved; an exploration floor in the logging policy bounds the weights"
        )
    else:
        # E[w] = 1 when the log served every variant the target plays; with bounded
        # weights the mean is then within a few standard errors of 1.
        mean, se = float(weights.mean()), float(np.std(weights, ddof=1) / math.sqrt(n))
        if covered and se > 0.0 and abs(mean - 1.0) > WEIGHT_MEAN_Z * se:
            notes.append(
                f"the weights average {mean:.4f}, not 1 (±{se:.4f}): the logged propensities "
                "do not match the probabilities the variants were drawn with"
            )
    return notes
