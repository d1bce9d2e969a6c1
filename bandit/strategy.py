"""The base every strategy shares: a validated, cached allocation and sampling from it."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import ClassVar, NamedTuple

from bandit.metrics import BINARY, VariantMetrics, check_reward
from bandit.parameters import Parameter

# The default is measured (bench/decisions.py): it keeps every logged propensity at 1 % or
# more, so the log supports re-weighted estimates, for about a fifth more regret under plain
# Thompson sampling (it costs floor x the losers' gaps per user while the experiment runs).
FLOOR = Parameter(
    "floor",
    0.01,
    0.0,
    0.5,
    doc="least share of new users every variant keeps (at most an even share)",
)

_CACHE_SIZE = 64


class _Table(NamedTuple):
    """An allocation ready to sample: probabilities, and boundaries for one bisect."""

    allocation: dict[str, float]
    names: tuple[str, ...]  # variants with a positive probability, in metrics order
    probabilities: tuple[float, ...]
    boundaries: list[float]  # cumulative probabilities without the last one


def check_metrics(metrics: Sequence[VariantMetrics]) -> tuple[VariantMetrics, ...]:
    """The metrics as a tuple; ValueError for an empty list or duplicate variant names."""
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("no variants: metrics must list at least one variant")
    for m in metrics:
        if not isinstance(m, VariantMetrics):
            raise TypeError(f"expected VariantMetrics, got {type(m).__name__}")
    names = [m.variant_name for m in metrics]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate variant names: {duplicates}")
    return metrics


def split_among_best(scores: Sequence[float], mass: float) -> list[float]:
    """`mass` split equally among the arms tied for the top score: never by list order."""
    top = max(scores)
    best = [i for i, s in enumerate(scores) if s == top]
    share = mass / len(best)
    weights = [0.0] * len(scores)
    for i in best:
        weights[i] = share
    return weights


class Strategy:
    """A bandit strategy: an allocation over the variants, and a pick drawn from it.

    Subclasses define `_weights(metrics)` (non-negative, not all zero). The allocation is
    computed once per distinct metrics and cached, so `choose` is one `rng.random()` and one
    bisect; pass the same tuple again to skip even the lookup (an identity check).

    Edge cases, the same for every strategy: one variant gets probability 1; an empty list
    or duplicate variant names raise ValueError (negative or NaN counts already do, in
    VariantMetrics); a reward sum above the invocation count counts as every invocation
    converted; a variant with probability 0 is never chosen.
    """

    name: ClassVar[str]
    # What the constructor takes, as keyword arguments of these names: the one declaration
    # every configuration surface reads (see bandit.parameters).
    parameters: ClassVar[tuple[Parameter, ...]] = ()

    def __init__(self, *, reward: str = BINARY) -> None:
        # The kind of reward the counters hold: which posterior model the strategy uses.
        self.reward = check_reward(reward)
        self._hot: tuple[object, _Table] | None = None
        self._cache: dict[tuple[VariantMetrics, ...], _Table] = {}

    @property
    def params(self) -> dict[str, float | int]:
        """The parameter values this instance runs with."""
        return {p.name: getattr(self, p.name) for p in self.parameters}

    def __repr__(self) -> str:
        shown = dict(self.params) | ({} if self.reward == BINARY else {"reward": self.reward})
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args})"

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        raise NotImplementedError

    def _shape(self, probabilities: list[float]) -> list[float]:
        """The allocation from the normalised weights; the identity unless a subclass adds to it."""
        return probabilities

    def allocation(self, metrics: Sequence[VariantMetrics]) -> dict[str, float]:
        """{variant_name: probability of being chosen}, summing to 1: the logged propensity."""
        return dict(self._table(metrics).allocation)

    def choose(self, metrics: Sequence[VariantMetrics], rng: random.Random) -> str:
        """One variant name, drawn exactly with the probabilities of `allocation(metrics)`."""
        hot = self._hot
        table = hot[1] if hot is not None and hot[0] is metrics else self._table(metrics)
        return table.names[bisect_right(table.boundaries, rng.random())]

    def _pick(self, metrics: Sequence[VariantMetrics], rng: random.Random) -> tuple[str, float]:
        """The chosen variant and its propensity."""
        hot = self._hot
        table = hot[1] if hot is not None and hot[0] is metrics else self._table(metrics)
        i = bisect_right(table.boundaries, rng.random())
        return table.names[i], table.probabilities[i]

    def _table(self, metrics: Sequence[VariantMetrics]) -> _Table:
        hot = self._hot
        if hot is not None and hot[0] is metrics:
            return hot[1]
        key = tuple(metrics)
        table = self._cache.get(key)
        if table is None:
            table = self._build(check_metrics(key))
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()  # simple and thread-safe; one endpoint rarely has many states
            self._cache[key] = table
        # A tuple of frozen metrics cannot change, so its identity is a safe cache key.
        self._hot = (metrics if isinstance(metrics, tuple) else key, table)
        return table

    def _build(self, metrics: tuple[VariantMetrics, ...]) -> _Table:
        weights = self._weights(metrics)
        total = math.fsum(weights)
        if not total > 0.0 or any(w < 0.0 for w in weights):
            raise ArithmeticError(f"{self.name} produced invalid weights {weights}")
        shares = self._shape([w / total for w in weights])
        return sampling_table({m.variant_name: p for m, p in zip(metrics, shares, strict=True)})


def sampling_table(allocation: Mapping[str, float]) -> _Table:
    """An allocation (probabilities summing to 1) ready to sample: a variant with 0 never is."""
    positive = [(name, p) for name, p in allocation.items() if p > 0.0]
    boundaries = []
    running = 0.0
    for _, p in positive[:-1]:
        running += p
        boundaries.append(running)
    return _Table(
        dict(allocation),
        tuple(name for name, _ in positive),
        tuple(p for _, p in positive),
        boundaries,
    )


class AdaptiveStrategy(Strategy):
    """A strategy that learns from the counters, with an exploration floor.

    Every variant keeps at least `floor` of new users (an even share if that is smaller), so
    the champion stays measured while the strategy leans toward the leader, and no logged
    propensity falls below the floor. The floor is mixed into the allocation the pick is
    drawn from: p_i = f + (1 - K f) q_i with f = min(floor, 1 / K) and q the strategy's own
    shares, so the logged propensity is still exactly the probability used.
    """

    parameters: ClassVar[tuple[Parameter, ...]] = (FLOOR,)

    def __init__(self, floor: float = FLOOR.default, *, reward: str = BINARY) -> None:
        super().__init__(reward=reward)
        self.floor = FLOOR.check(floor)

    def _shape(self, probabilities: list[float]) -> list[float]:
        k = len(probabilities)
        floor = min(self.floor, 1.0 / k)
        if floor == 0.0:
            return probabilities
        return [floor + (1.0 - k * floor) * p for p in probabilities]
