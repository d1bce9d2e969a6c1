"""The warm-up gate: which strategy actually chooses a new user's variant."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bandit.metrics import VariantMetrics
from bandit.strategy import Strategy, sampling_table
from bandit.weighted import WeightedSampling

_WARMUP = WeightedSampling()


@dataclass(frozen=True, slots=True)
class Selection:
    """A pick as it is logged: the variant, the name of the strategy that chose it, and the
    probability that strategy gave it (the propensity)."""

    variant_name: str
    strategy: str
    propensity: float


def select(
    strategy: Strategy,
    metrics: Sequence[VariantMetrics],
    rng: random.Random,
    warmup: int = 0,
) -> Selection:
    """Choose with `strategy` once every variant has more than `warmup` invocations; before
    that with WeightedSampling on the initial weights (a bandit needs feedback first).
    With warmup=0 that means until every variant has been invoked at least once."""
    chooser = deciding_strategy(strategy, metrics, warmup)
    name, propensity = chooser._pick(metrics, rng)
    return Selection(name, chooser.name, propensity)


def deciding_strategy(
    strategy: Strategy, metrics: Sequence[VariantMetrics], warmup: int = 0
) -> Strategy:
    """The strategy that chooses for a new user now: `strategy`, or WeightedSampling in warm-up.

    Its allocation is what a new user would be assigned with, as `/stats` reports it.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup!r}")
    if any(m.invocation_count <= warmup for m in metrics):
        return _WARMUP
    return strategy


class Allocation:
    """An allocation worked out earlier (and stored with the counters it came from), to pick
    from as `select` would have: one `rng.random()` and one bisect, nothing recomputed."""

    __slots__ = ("_table", "strategy")

    def __init__(self, strategy: str, probabilities: Mapping[str, float]) -> None:
        if not probabilities or not any(p > 0.0 for p in probabilities.values()):
            raise ValueError(f"no variant has a positive share: {probabilities}")
        self.strategy = strategy  # the name of the strategy that allocated (warm-up's, or not)
        self._table = sampling_table(probabilities)

    @property
    def probabilities(self) -> dict[str, float]:
        return dict(self._table.allocation)

    def pick(self, rng: random.Random) -> Selection:
        table = self._table
        i = bisect_right(table.boundaries, rng.random())
        return Selection(table.names[i], self.strategy, table.probabilities[i])
