"""EpsilonGreedy: explore uniformly with probability epsilon, otherwise the best mean reward."""

from __future__ import annotations

import math

from bandit.metrics import VariantMetrics
from bandit.strategy import Strategy, split_among_best


def mean_reward(m: VariantMetrics) -> float:
    """Observed reward rate, the reward sum clipped to [0, invocations]; +inf when untried."""
    if m.invocation_count == 0:
        return math.inf
    return min(float(m.reward_sum), float(m.invocation_count)) / m.invocation_count


def check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        raise ValueError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
    if not 0.0 <= epsilon <= 1.0:  # also rejects NaN
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    return float(epsilon)


class EpsilonGreedy(Strategy):
    """Each variant gets epsilon / K; the remaining 1 - epsilon is split among the variants
    tied for the best mean reward. A variant never invoked counts as tied for best (it has
    no estimate yet), so every variant gets tried; with no invocations at all it is uniform.
    """

    name = "EpsilonGreedy"

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = check_epsilon(epsilon)

    def __repr__(self) -> str:
        return f"EpsilonGreedy(epsilon={self.epsilon})"

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        explore = self.epsilon / len(metrics)
        greedy = split_among_best([mean_reward(m) for m in metrics], 1.0 - self.epsilon)
        return [explore + g for g in greedy]
