"""Off-policy evaluation: what another policy would have earned, from the log of this one.

Every logged invocation carries the probability (propensity) with which its variant was
drawn. Re-weighting each logged reward by target probability / logged propensity gives an
unbiased estimate of the reward per invocation any other policy would have earned, as long
as the logging policy gave every variant the target plays a positive probability.

Four estimators, as compared by Dudík, Langford, Li, "Doubly Robust Policy Evaluation and
Learning" (ICML 2011): the direct method (a reward model, no weights), inverse propensity
scoring, self-normalised IPS (Swaminathan, Joachims 2015), and doubly robust (the model,
corrected by the weighted residuals). Each comes with a 95 % interval from the sums of its
per-event influence terms (`Terms`): by default a t interval corrected for their skewness
(`skew_interval`), and another one (an anytime-valid confidence sequence) can be computed
from the same sums (pass it as `interval`).

The log is read in chunks, in order, a few times (the reward model, the values, then the
spread around them): memory holds one chunk, whatever the log's length, so a log kept on
disk (`Rows`) is evaluated in bounded memory. Pure numpy and scipy; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol

import numpy as np
from scipy.special import stdtrit

from bandit.metrics import VariantMetrics
from bandit.strategy import Strategy

DIRECT_METHOD = "DM"
IPS = "IPS"
SNIPS = "SNIPS"
DOUBLY_ROBUST = "DR"
ESTIMATORS = (DIRECT_METHOD, IPS, SNIPS, DOUBLY_ROBUST)

# Events per chunk: a few MB of per-event arrays, however long the log.
CHUNK_EVENTS = 65_536
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
    """Logged invocations in time order: the variant served, its reward, its propensity.

    `features` (events x columns, optional) describe each event's request context: the
    doubly robust estimator's reward model is fitted on them (`fit_reward_model`).
    """

    variants: tuple[str, ...]
    actions: np.ndarray  # index into variants
    rewards: np.ndarray
    propensities: np.ndarray
    features: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        variants: Sequence[str],
        served: Sequence[str],
        rewards: Sequence[float],
        propensities: Sequence[float | None],
        features: np.ndarray | None = None,
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
        if features is not None:
            features = np.asarray(features, dtype=np.float64)
            if features.ndim != 2 or len(features) != len(served):
                raise OffPolicyError(f"features must be a ({len(served)}, columns) matrix")
        log = cls(
            variants,
            actions,
            np.asarray(rewards, dtype=np.float64),
            np.asarray(propensities, dtype=np.float64),
            features,
        )
        log.check()
        return log

    def __len__(self) -> int:
        return len(self.actions)

    def check(self) -> None:
        """OffPolicyError for a propensity outside (0, 1] or a reward that is not finite."""
        check_chunk(self, 0)
        if len(self) < 2:
            raise OffPolicyError(f"the log has {len(self)} invocation(s): at least 2 are needed")

    def chunks(self) -> Iterator[Log]:
        """Consecutive slices of at most CHUNK_EVENTS events (views, not copies)."""
        for start in range(0, len(self), CHUNK_EVENTS):
            part = slice(start, start + CHUNK_EVENTS)
            yield Log(
                self.variants,
                self.actions[part],
                self.rewards[part],
                self.propensities[part],
                None if self.features is None else self.features[part],
            )


class Rows(Protocol):
    """A log read in chunks, each a `Log` of consecutive events, in order, every time asked."""

    variants: tuple[str, ...]

    def __len__(self) -> int: ...

    def chunks(self) -> Iterator[Log]: ...


def check_chunk(chunk: Log, start: int) -> None:
    """OffPolicyError naming the first event (counted from the log's start) that is unusable."""
    bad = np.flatnonzero(~((chunk.propensities > 0.0) & (chunk.propensities <= 1.0)))
    if bad.size:
        i = int(bad[0])
        raise OffPolicyError(
            f"event {start + i} has propensity {float(chunk.propensities[i])!r}, not in (0, 1]"
            + (" (logged without one)" if math.isnan(chunk.propensities[i]) else "")
        )
    bad = np.flatnonzero(~np.isfinite(chunk.rewards))
    if bad.size:
        i = int(bad[0])
        raise OffPolicyError(
            f"event {start + i} has reward {float(chunk.rewards[i])!r}, not a finite number"
        )


@dataclass(frozen=True)
class Replay:
    """A strategy replayed on the log's own counters, refreshed every `batch_size` events.

    The counters come from the events before each refresh (as aggregation refreshes them
    every minute), with their rewards: the replay sees the log's outcomes, not outcomes
    of its own choices, which is what an off-policy estimate reweights.
    """

    strategy: Strategy
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise OffPolicyError(f"batch_size must be >= 1, got {self.batch_size}")


# What a target policy may be: a variant's name (always that variant), "uniform", one
# allocation for every event ({variant: probability}), an (events x variants) array, a
# callable from the event's index to its allocation (mapping or sequence), or a Replay.
Policy = (
    str
    | Mapping[str, float]
    | np.ndarray
    | Callable[[int], Mapping[str, float] | Sequence]
    | Replay
)
UNIFORM = "uniform"
# (chunk, index of its first event) -> the target's (chunk events x variants) probabilities
_Targets = Callable[[Log, int], np.ndarray]


def _targets(rows: Rows, policy: Policy) -> _Targets:
    """A fresh reader of the target's probabilities, chunk by chunk (a replay keeps state)."""
    variants, n, k = rows.variants, len(rows), len(rows.variants)
    if isinstance(policy, str):
        if policy == UNIFORM:
            row = np.full(k, 1.0 / k)
        elif policy in variants:
            row = np.zeros(k)
            row[variants.index(policy)] = 1.0
        else:
            raise OffPolicyError(
                f"policy {policy!r} is neither 'uniform' nor a variant of the log "
                f"({', '.join(variants)})"
            )
        return lambda chunk, start: np.broadcast_to(row, (len(chunk), k))
    if isinstance(policy, Mapping):
        row = _row(variants, policy, "the policy")
        _check_rows(row[None, :], 0)
        return lambda chunk, start: np.broadcast_to(row, (len(chunk), k))
    if isinstance(policy, np.ndarray):
        matrix = np.asarray(policy, dtype=np.float64)
        if matrix.shape != (n, k):
            raise OffPolicyError(f"policy matrix has shape {matrix.shape}, expected {(n, k)}")

        def sliced(chunk: Log, start: int) -> np.ndarray:
            part = matrix[start : start + len(chunk)]
            _check_rows(part, start)
            return part

        return sliced
    if isinstance(policy, Replay):
        return _Replayer(policy, variants)
    if callable(policy):

        def called(chunk: Log, start: int) -> np.ndarray:
            part = np.array(
                [
                    _row(variants, policy(i), f"the policy at event {i}")
                    for i in range(start, start + len(chunk))
                ]
            )
            _check_rows(part, start)
            return part

        return called
    raise OffPolicyError(f"a policy cannot be a {type(policy).__name__}")


class _Replayer:
    """A Replay's allocations, chunk by chunk, from the counters of the events before."""

    def __init__(self, replay: Replay, variants: tuple[str, ...]) -> None:
        self.replay, self.variants = replay, variants
        k = len(variants)
        self.invocations = np.zeros(k, dtype=np.int64)
        self.rewards = np.zeros(k)
        self.conversions = np.zeros(k)
        self.row = np.empty(k)

    def __call__(self, chunk: Log, start: int) -> np.ndarray:
        size, k = self.replay.batch_size, len(self.variants)
        matrix = np.empty((len(chunk), k))
        at = 0
        while at < len(chunk):
            if (start + at) % size == 0:
                self.row = self._allocation()
            stop = min(len(chunk), at + size - (start + at) % size)
            matrix[at:stop] = self.row
            part = slice(at, stop)
            a, r = chunk.actions[part], chunk.rewards[part]
            self.invocations += np.bincount(a, minlength=k)
            self.rewards += np.bincount(a, weights=r, minlength=k)
            self.conversions += np.bincount(a, weights=(r > 0).astype(np.float64), minlength=k)
            at = stop
        return matrix

    def _allocation(self) -> np.ndarray:
        metrics = tuple(
            VariantMetrics(
                name,
                1.0,
                int(self.invocations[j]),
                int(self.conversions[j]),
                max(float(self.rewards[j]), 0.0),
            )
            for j, name in enumerate(self.variants)
        )
        allocation = self.replay.strategy.allocation(metrics)
        return np.array([allocation[name] for name in self.variants])


def target_probabilities(rows: Rows, policy: Policy) -> np.ndarray:
    """The whole (events x variants) matrix of the target's probabilities, checked to sum to 1.

    For a log that fits in memory (a notebook, a test); `evaluate` reads it chunk by chunk.
    """
    targets, start, parts = _targets(rows, policy), 0, []
    for chunk in rows.chunks():
        parts.append(np.array(targets(chunk, start)))
        start += len(chunk)
    return np.concatenate(parts) if parts else np.empty((0, len(rows.variants)))


def _row(
    variants: tuple[str, ...], probabilities: Mapping[str, float] | Sequence, what: str
) -> np.ndarray:
    if isinstance(probabilities, Mapping):
        unknown = set(probabilities) - set(variants)
        if unknown:
            raise OffPolicyError(f"{what} names unknown variant(s) {sorted(unknown)}")
        return np.array([float(probabilities.get(name, 0.0)) for name in variants])
    row = np.asarray(probabilities, dtype=np.float64)
    if row.shape != (len(variants),):
        raise OffPolicyError(f"{what} gives {row.size} probabilities for {len(variants)} variants")
    return row


def _check_rows(matrix: np.ndarray, start: int) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(matrix) & (matrix >= 0.0), axis=1))
    if bad.size:
        i = int(bad[0])
        raise OffPolicyError(f"target probabilities of event {start + i} are {matrix[i].tolist()}")
    sums = matrix.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
    if bad.size:
        i = int(bad[0])
        raise OffPolicyError(
            f"target probabilities of event {start + i} sum to {sums[i]:.6g}, not 1"
        )


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


@dataclass
class Terms:
    """Sums of an estimator's per-event influence terms ψ (centred on its value): all an
    interval needs, accumulated chunk by chunk."""

    count: int = 0
    total: float = 0.0  # Σ ψ (0 up to rounding)
    squares: float = 0.0  # Σ ψ²
    cubes: float = 0.0  # Σ ψ³
    fourths: float = 0.0  # Σ ψ⁴

    def add(self, influence: np.ndarray) -> None:
        squared = np.square(influence)
        self.count += influence.size
        self.total += float(influence.sum())
        self.squares += float(squared.sum())
        self.cubes += float((squared * influence).sum())
        self.fourths += float(np.square(squared).sum())

    @property
    def std_error(self) -> float:
        """sd(ψ) / sqrt(n), the sample standard deviation taken around ψ's own mean."""
        n = self.count
        variance = max(self.squares - self.total * self.total / n, 0.0) / (n - 1)
        return math.sqrt(variance / n)

    @property
    def skewness(self) -> float:
        """Third central moment over the second to the power 1.5 (0 if the terms are all equal)."""
        n = self.count
        mean = self.total / n
        second = self.squares / n - mean * mean
        third = self.cubes / n - 3.0 * mean * self.squares / n + 2.0 * mean**3
        # Terms all equal up to rounding have no skewness (and a ratio of rounding errors).
        return third / second**1.5 if second > 1e-12 * (self.squares / n) else 0.0

    @property
    def degrees_of_freedom(self) -> float:
        """(Σ ψ²)² / Σ ψ⁴: how many comparable terms the variance estimate rests on."""
        return self.squares * self.squares / self.fourths if self.fourths > 0.0 else math.inf


# (value, its influence terms' sums, level) -> (standard error, low, high)
Interval = Callable[[float, Terms, float], tuple[float, float, float]]


def normal_interval(value: float, terms: Terms, level: float) -> tuple[float, float, float]:
    """value ± z · se: the textbook fixed-sample interval, too short under heavy weights."""
    se = terms.std_error
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return se, value - z * se, value + z * se


def student_interval(value: float, terms: Terms, level: float) -> tuple[float, float, float]:
    """value ± t · se, t with Satterthwaite's effective degrees of freedom (Σψ²)² / Σψ⁴.

    The standard error rests on Σψ²; when a few heavy weights dominate it (a variant at
    the exploration floor, converting rarely) it is itself noisy, and the normal quantile
    undercovers. Treating each ψ² as one variance component, Satterthwaite's
    approximation (Biometrics Bulletin, 1946) gives the degrees of freedom of their sum;
    with many comparable terms they are large and t is the normal quantile.
    """
    se = terms.std_error
    degrees = max(terms.degrees_of_freedom, 1.0)
    q = float(stdtrit(degrees, 0.5 + level / 2.0))
    return se, value - q * se, value + q * se


def skew_interval(value: float, terms: Terms, level: float) -> tuple[float, float, float]:
    """The t interval of `student_interval`, corrected for the skewness of the terms ψ.

    A variant that converts rarely at a large weight makes ψ skewed to the right (a few
    large positive terms, many small negative ones), and a studentised mean of skewed
    terms is skewed the other way: when the estimate falls short, few conversions also
    made its standard error short, so the symmetric interval lies wholly below the truth
    more often than above it. Hall's monotone transformation of the studentised
    statistic T = (value − θ)/se, g(T) = T + γT²/(3√n) + γ²T³/(27n) + γ/(6√n) with γ
    the skewness of ψ, is normal to second order (P. Hall, "On the removal of skewness
    by transformation", JRSS B 54, 1992); the interval is the θ for which g(T) lies
    within ± the t quantile of `student_interval`. With symmetric terms (γ = 0) it is
    that interval.
    """
    se = terms.std_error
    degrees = max(terms.degrees_of_freedom, 1.0)
    q = float(stdtrit(degrees, 0.5 + level / 2.0))
    gamma = terms.skewness
    a = gamma / math.sqrt(terms.count)  # γ / √n
    b = a / 3.0

    def inverse(u: float) -> float:
        # g(T) = ((1 + bT)³ − 1) / (3b) + a/6, monotone, so T = g⁻¹(u) in closed form.
        if abs(b) < 1e-12:
            return u - a / 6.0
        return float((np.cbrt(1.0 + 3.0 * b * (u - a / 6.0)) - 1.0) / b)

    return se, value - se * inverse(q), value - se * inverse(-q)


def _weighted_sums(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Per variant: Σ 1/p and Σ r/p over the events that served it (and checks every chunk).

    Their ratio is the direct method's reward model, each variant's mean with its events
    weighted by 1 / propensity. A plain mean is biased under adaptive allocation (a
    variant's unlucky early draws cut its later traffic, so they are over-represented);
    weighting by the inverse propensity makes each variant's mean consistent.
    """
    k, start = len(rows.variants), 0
    weight, total = np.zeros(k), np.zeros(k)
    for chunk in rows.chunks():
        check_chunk(chunk, start)
        inverse = 1.0 / chunk.propensities
        weight += np.bincount(chunk.actions, weights=inverse, minlength=k)
        total += np.bincount(chunk.actions, weights=inverse * chunk.rewards, minlength=k)
        start += len(chunk)
    if start < 2:
        raise OffPolicyError(f"the log has {start} invocation(s): at least 2 are needed")
    return weight, total


# (chunk) -> predicted rewards, (chunk events x variants)
RewardModel = Callable[[Log], np.ndarray]


@dataclass
class _Sums:
    """One policy's first-pass sums: its values, weights and warnings' evidence."""

    target: np.ndarray  # Σ over events of the target's probabilities, per variant
    weight: float = 0.0
    weight_squares: float = 0.0
    weighted_reward: float = 0.0
    predicted: float = 0.0  # Σ π·model (DR's model)
    residual: float = 0.0  # Σ w (r - model at the served variant)
    heaviest: tuple[float, int, float] = (-1.0, 0, 1.0)  # weight, event, propensity
    starved: tuple[float, int, float] = (0.0, 0, 1.0)  # bound, event, propensity


def evaluate(
    rows: Rows,
    policy: Policy,
    *,
    level: float = 0.95,
    reward_model: np.ndarray | RewardModel | None = None,
    interval: Interval = skew_interval,
) -> tuple[Estimate, ...]:
    """DM, IPS, SNIPS and DR estimates of the target's reward per invocation."""
    return evaluate_policies(
        rows, {"": policy}, level=level, reward_model=reward_model, interval=interval
    )[""]


def evaluate_policies(
    rows: Rows,
    policies: Mapping[str, Policy],
    *,
    level: float = 0.95,
    reward_model: np.ndarray | RewardModel | None = None,
    interval: Interval = skew_interval,
) -> dict[str, tuple[Estimate, ...]]:
    """Each policy's DM, IPS, SNIPS and DR estimates, from three passes over the log.

    The direct method's model is each variant's propensity-weighted mean
    (`_weighted_sums`), whose own estimation error its interval includes. The doubly
    robust one's is `reward_model` when given (an (events x variants) matrix, or a
    callable predicting a chunk's, e.g. `fit_reward_model` on the request context), else
    the same means. A variant the log never served gets the overall weighted mean, with
    a warning on every estimate that gives it probability.
    """
    if not 0.0 < level < 1.0:
        raise OffPolicyError(f"level must be in (0, 1), got {level}")
    variants = rows.variants
    k = len(variants)
    weight_by_variant, reward_by_variant = _weighted_sums(rows)
    n = len(rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(weight_by_variant > 0.0, reward_by_variant / weight_by_variant, np.nan)
    pooled = float(reward_by_variant.sum() / weight_by_variant.sum())
    unserved_variants = np.isnan(means)
    means = np.where(unserved_variants, pooled, means)
    model = _model(reward_model, means, n, k)

    # Pass 1: the values, the weights' evidence.
    sums = {name: _Sums(np.zeros(k)) for name in policies}
    readers = {name: _targets(rows, policy) for name, policy in policies.items()}
    start = 0
    for chunk in rows.chunks():
        m = model(chunk, start)
        at_served = m[np.arange(len(chunk)), chunk.actions]
        for name, reader in readers.items():
            _first_pass(sums[name], chunk, start, reader(chunk, start), m, at_served)
        start += len(chunk)

    values: dict[str, tuple[float, float, float, float]] = {}
    for name, s in sums.items():
        dm = float(s.target @ means) / n
        ips = s.weighted_reward / n
        snips = s.weighted_reward / s.weight if s.weight > 0.0 else math.nan
        dr = (s.predicted + s.residual) / n
        values[name] = (dm, ips, snips, dr)

    # Pass 2: the influence terms around those values.
    terms = {name: [Terms() for _ in ESTIMATORS] for name in policies}
    readers = {name: _targets(rows, policy) for name, policy in policies.items()}
    share = weight_by_variant / n
    start = 0
    for chunk in rows.chunks():
        events = np.arange(len(chunk))
        a, r, p = chunk.actions, chunk.rewards, chunk.propensities
        m = model(chunk, start)
        at_served = m[events, a]
        for name, reader in readers.items():
            target = reader(chunk, start)
            s, (dm, ips, snips, dr) = sums[name], values[name]
            w = target[events, a] / p
            # The DM model's own error: each variant's weighted mean moves with its events.
            with np.errstate(invalid="ignore", divide="ignore"):
                scale = np.where(share > 0.0, s.target / n / share, 0.0)
            dm_terms, ips_terms, snips_terms, dr_terms = terms[name]
            dm_terms.add(target @ means - dm + scale[a] * (r - means[a]) / p)
            ips_terms.add(w * r - ips)
            w_bar = s.weight / n
            snips_terms.add(w * (r - snips) / w_bar if w_bar > 0.0 else np.full(len(chunk), 0.0))
            dr_terms.add(np.einsum("ij,ij->i", target, m) + w * (r - at_served) - dr)
        start += len(chunk)

    results = {}
    for name, s in sums.items():
        common: list[str] = []
        policy = policies[name]
        if isinstance(policy, Replay) and policy.batch_size >= n:
            common.append(
                f"replayed in one batch of {policy.batch_size} for {n} events: it never saw a "
                "reward, so it plays its allocation without data (the uniform split) "
                "throughout; give a smaller batch size"
            )
        unserved = [variants[j] for j in range(k) if unserved_variants[j] and s.target[j] > 0.0]
        if unserved:
            common.append(
                f"the target plays {', '.join(unserved)}, which the log never served: "
                "no estimator sees its rewards"
            )
        ess = s.weight**2 / s.weight_squares if s.weight_squares > 0.0 else 0.0
        weight_notes = common + _weight_warnings(s, ess, n, covered=not unserved)

        def estimate(
            estimator: str, value: float, influence: Terms, notes: list[str], ess: float = ess
        ) -> Estimate:
            se, low, high = interval(value, influence, level)
            return Estimate(estimator, value, se, low, high, ess, n, tuple(notes))

        dm, ips, snips, dr = values[name]
        dm_terms, ips_terms, snips_terms, dr_terms = terms[name]
        results[name] = (
            estimate(DIRECT_METHOD, dm, dm_terms, common),
            estimate(IPS, ips, ips_terms, weight_notes),
            estimate(SNIPS, snips, snips_terms, weight_notes),
            estimate(DOUBLY_ROBUST, dr, dr_terms, weight_notes),
        )
    return results


def _model(
    reward_model: np.ndarray | RewardModel | None, means: np.ndarray, n: int, k: int
) -> Callable[[Log, int], np.ndarray]:
    if reward_model is None:
        return lambda chunk, start: np.broadcast_to(means, (len(chunk), k))
    if callable(reward_model):
        given = reward_model

        def predicted(chunk: Log, start: int) -> np.ndarray:
            out = np.asarray(given(chunk), dtype=np.float64)
            if out.shape != (len(chunk), k) or not np.all(np.isfinite(out)):
                raise OffPolicyError(
                    f"the reward model must predict a finite {(len(chunk), k)} matrix"
                )
            return out

        return predicted
    matrix = np.asarray(reward_model, dtype=np.float64)
    if matrix.shape != (n, k) or not np.all(np.isfinite(matrix)):
        raise OffPolicyError(f"reward_model must be a finite {(n, k)} matrix")
    return lambda chunk, start: matrix[start : start + len(chunk)]


def _first_pass(
    s: _Sums, chunk: Log, start: int, target: np.ndarray, m: np.ndarray, at_served: np.ndarray
) -> None:
    events = np.arange(len(chunk))
    a, r, p = chunk.actions, chunk.rewards, chunk.propensities
    on_served = target[events, a]
    w = on_served / p
    s.target += target.sum(axis=0)
    s.weight += float(w.sum())
    s.weight_squares += float(np.square(w).sum())
    s.weighted_reward += float((w * r).sum())
    s.predicted += float(np.einsum("ij,ij->i", target, m).sum())
    s.residual += float((w * (r - at_served)).sum())
    heaviest = int(np.argmax(w))
    if w[heaviest] > s.heaviest[0]:
        s.heaviest = (float(w[heaviest]), start + heaviest, float(p[heaviest]))
    # Where the target plays other variants, they had at most 1 - propensity from the
    # logging policy, so one of them would have had a weight of at least
    # (1 - on_served) / (1 - propensity) had it been drawn: a starved variant shows even
    # when it was never drawn.
    off = 1.0 - on_served
    with np.errstate(divide="ignore", invalid="ignore"):
        unseen = np.where(off > 1e-12, off / (1.0 - p), 0.0)
    starved = int(np.argmax(unseen))
    if unseen[starved] > s.starved[0]:
        s.starved = (float(unseen[starved]), start + starved, float(p[starved]))


def _weight_warnings(s: _Sums, ess: float, n: int, *, covered: bool) -> list[str]:
    """Why the importance weights make an estimate unreliable, if they do."""
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
    weight, heaviest, propensity = s.heaviest
    bound, starved, left = s.starved
    if weight > MAX_WEIGHT:
        notes.append(
            f"event {heaviest} has weight {weight:.3g} (logged propensity "
            f"{propensity:.3g}): a variant was starved; "
            "an exploration floor in the logging policy bounds the weights"
        )
    elif bound > MAX_WEIGHT:
        notes.append(
            f"at event {starved} the logging policy left at most "
            f"{1.0 - left:.3g} to the variants the target plays there "
            f"(a weight of {bound:.3g} or more, had one been drawn): a variant was "
            "starved; an exploration floor in the logging policy bounds the weights"
        )
    else:
        # E[w] = 1 when the log served every variant the target plays; with bounded
        # weights the mean is then within a few standard errors of 1.
        mean = s.weight / n
        variance = max(s.weight_squares - s.weight * s.weight / n, 0.0) / (n - 1)
        se = math.sqrt(variance / n)
        if covered and se > 0.0 and abs(mean - 1.0) > WEIGHT_MEAN_Z * se:
            notes.append(
                f"the weights average {mean:.4f}, not 1 (±{se:.4f}): the logged propensities "
                "do not match the probabilities the variants were drawn with"
            )
    return notes
