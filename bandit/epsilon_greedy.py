"""EpsilonGreedy: explore uniformly with probability epsilon, otherwise the best mean reward."""

from __future__ import annotations

import math

from bandit.metrics import BINARY, CONTINUOUS, VariantMetrics
from bandit.parameters import Parameter
from bandit.strategy import FLOOR, AdaptiveStrategy, split_among_best

EPSILON = Parameter(
    "epsilon", 0.1, 0.0, 1.0, doc="share of traffic spread evenly over all variants"
)


def mean_reward(m: VariantMetrics, reward: str = BINARY) -> float:
    """Observed mean reward per invocation, +inf when untried; for binary rewards the reward
    sum clipped to [0, invocations] (a rate), for continuous ones as it is."""
    if m.invocation_count == 0:
        return math.inf
    if reward == CONTINUOUS:
        return m.reward_sum / m.invocation_count
    return min(float(m.reward_sum), float(m.invocation_count)) / m.invocation_count


class EpsilonGreedy(AdaptiveStrategy):
    """Each variant gets epsilon / K; the remaining 1 - epsilon is split among the variants
    tied for the best mean reward. A variant never invoked counts as tied for best (it has
    no estimate yet), so every variant gets tried; with no invocations at all it is uniform.
    """

    name = "EpsilonGreedy"
    parameters = (EPSILON, *AdaptiveStrategy.parameters)

    def __init__(
        self,
        epsilon: float = EPSILON.default,
        floor: float = FLOOR.default,
        *,
        reward: str = BINARY,
    ) -> None:
        super().__init__(floor, reward=reward)
        self.epsilon = EPSILON.check(epsilon)

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        explore = self.epsilon / len(metrics)
        greedy = split_among_best(
            [mean_reward(m, self.reward) for m in metrics], 1.0 - self.epsilon
        )
        return [explore + g for g in greedy]
