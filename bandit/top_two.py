"""TopTwoThompson: Thompson sampling that keeps sending traffic to the runner-up.

Russo, "Simple Bayesian Algorithms for Best-Arm Identification" (COLT 2016; Operations
Research 68(6), 2020). Plain Thompson sampling starves every variant but the leader, so
telling the leader apart from the runner-up takes ever longer; top-two sampling plays the
Thompson leader with probability beta and otherwise the best of a fresh posterior draw
among the other variants, which keeps the runner-up measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bandit.metrics import BINARY, CONTINUOUS, VariantMetrics
from bandit.parameters import Parameter
from bandit.strategy import FLOOR, AdaptiveStrategy

# 0.9 by measurement (bench/decisions.py): a winner called in 1.7-1.9 times the users of a
# 50/50 split, at under twice plain Thompson sampling's regret. Russo's 0.5 is optimal for
# finding the best arm alone, ignoring what the experiment costs. Continuous rewards
# (revenue) get 0.7: their difference has far more variance per user, and at 0.9 the
# runner-up's tenth of the traffic left the call beyond 100,000 users at 0.05 / +20 %
# (50/50: 47,000). 0.8 called at 1.43x and 1.33x the 50/50 split's users (0.05 / +20 %,
# 0.20 / +10 %), but a fifth to a third of its runs were still undecided at 100,000 users,
# and the difference reported at its calls stayed biased after the adjustment (+2.6 and
# +3.2 Monte Carlo se); 0.7 calls at 1.23x and 1.12x, the adjusted difference within 1.4
# se of the truth, for 13-21 % more regret than 0.8 (BENCHMARKS.md, "Decisions").
BETA = Parameter(
    "beta",
    0.9,
    0.0,
    1.0,
    open_low=True,
    open_high=True,
    doc="share of traffic for the leader",
    by_reward=((CONTINUOUS, 0.7),),
)


def top_two_allocation(best: Sequence[float], beta: float) -> list[float]:
    """P(play i) = beta * p_i + (1 - beta) * sum_{j != i} p_j * p_i / (1 - p_j).

    `best` holds p_i = P(variant i is best). The leader j is drawn with p_j; the challenger
    is the best of an independent draw conditioned on not being j, i.e. i with
    p_i / (1 - p_j). The sum of the others' p stands for 1 - p_j (equal in exact
    arithmetic, but never a difference of nearly equal numbers); when it is 0 (one variant
    certainly best) the challenger is any other variant, evenly: the resampling loop of the
    paper would never end there, and the runner-up still gets measured.
    """
    k = len(best)
    if k == 1:
        return [1.0]
    out = [beta * p for p in best]
    for j, pj in enumerate(best):
        if pj == 0.0:
            continue
        others = math.fsum(p for i, p in enumerate(best) if i != j)
        for i, pi in enumerate(best):
            if i == j:
                continue
            share = pi / others if others > 0.0 else 1.0 / (k - 1)
            out[i] += (1.0 - beta) * pj * share
    return out


class TopTwoThompson(AdaptiveStrategy):
    """Top-two Thompson sampling on the same posteriors as ThompsonSampling.

    The allocation above is computed exactly from the probabilities of being best (the
    same quadrature as ThompsonSampling), so `choose` draws from it and the logged
    propensity is exact, never estimated from resampling.
    """

    name = "TopTwoThompson"
    parameters = (BETA, *AdaptiveStrategy.parameters)

    def __init__(
        self, beta: float | None = None, floor: float = FLOOR.default, *, reward: str = BINARY
    ) -> None:
        super().__init__(floor, reward=reward)
        # None: the default for this kind of reward (BETA.by_reward).
        self.beta = BETA.check(BETA.default_for(self.reward) if beta is None else beta)

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        # Imported here, as in `bandit.thompson`: an API function's cold start needs none of it.
        from bandit.posterior import best_probabilities

        best, _ = best_probabilities(metrics, self.reward)
        return top_two_allocation(best, self.beta)
