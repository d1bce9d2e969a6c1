"""UCB1: the variant with the highest upper confidence bound on its mean reward."""

from __future__ import annotations

import math

from bandit.epsilon_greedy import mean_reward
from bandit.metrics import BINARY, CONTINUOUS, VariantMetrics
from bandit.strategy import AdaptiveStrategy, split_among_best


def upper_bound(
    m: VariantMetrics, total_invocations: int, reward: str = BINARY, scale: float = 1.0
) -> float:
    """mean + scale * sqrt(2 ln t / n) (Auer, Cesa-Bianchi, Fischer 2002, "Finite-time
    analysis of the multiarmed bandit problem", Machine Learning 47); +inf for a variant
    never invoked. Their bound is for rewards in [0, 1], scale 1."""
    if m.invocation_count == 0:
        return math.inf
    return mean_reward(m, reward) + scale * math.sqrt(
        2.0 * math.log(total_invocations) / m.invocation_count
    )


def pooled_sd(metrics: tuple[VariantMetrics, ...]) -> float:
    """Standard deviation of every trial's outcome, all variants pooled: UCB1's scale for
    continuous rewards, which have no [0, 1] range (the sub-Gaussian form of the bound,
    with the observed spread standing in for the unknown one). 1.0 before any spread is seen."""
    n = sum(m.invocation_count for m in metrics)
    if n == 0:
        return 1.0
    mean = math.fsum(m.reward_sum for m in metrics) / n
    variance = math.fsum(m.reward_sq_sum for m in metrics) / n - mean * mean
    return math.sqrt(variance) if variance > 0.0 else 1.0


class UCB1(AdaptiveStrategy):
    """Deterministic given the metrics: all probability on the highest bound, split equally
    among ties (so untried variants share it first). Under batched feedback it sends whole
    batches to one variant; prefer ThompsonSampling there."""

    name = "UCB1"

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        total = sum(m.invocation_count for m in metrics)
        scale = pooled_sd(metrics) if self.reward == CONTINUOUS else 1.0
        return split_among_best([upper_bound(m, total, self.reward, scale) for m in metrics], 1.0)
