"""UCB1: the variant with the highest upper confidence bound on its mean reward."""

from __future__ import annotations

import math

from bandit.epsilon_greedy import mean_reward
from bandit.metrics import VariantMetrics
from bandit.strategy import AdaptiveStrategy, split_among_best


def upper_bound(m: VariantMetrics, total_invocations: int) -> float:
    """mean + sqrt(2 ln t / n) (Auer, Cesa-Bianchi, Fischer 2002, "Finite-time analysis of
    the multiarmed bandit problem", Machine Learning 47); +inf for a variant never invoked."""
    if m.invocation_count == 0:
        return math.inf
    return mean_reward(m) + math.sqrt(2.0 * math.log(total_invocations) / m.invocation_count)


class UCB1(AdaptiveStrategy):
    """Deterministic given the metrics: all probability on the highest bound, split equally
    among ties (so untried variants share it first). Under batched feedback it sends whole
    batches to one variant; prefer ThompsonSampling there."""

    name = "UCB1"

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        total = sum(m.invocation_count for m in metrics)
        return split_among_best([upper_bound(m, total) for m in metrics], 1.0)
