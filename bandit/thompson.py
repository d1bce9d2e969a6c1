"""ThompsonSampling: each variant with its probability of having the best conversion rate."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from bandit.metrics import CONTINUOUS, VariantMetrics
from bandit.strategy import AdaptiveStrategy, check_metrics

# `bandit.posterior` (and the special functions under it) is imported where an allocation is
# worked out: an API function reads the allocation aggregation stored, and its cold start
# compiled those modules for nothing (about 2 ms, `bench/coldstart.py`).


class ThompsonSampling(AdaptiveStrategy):
    """Posterior Beta(1 + successes, 1 + failures) per variant (see `beta_parameters`), or
    for continuous rewards the Student-t posterior of its mean (`student_t_parameters`).

    Drawing one sample per posterior and taking the largest picks each variant with its
    probability of being best; that probability *is* the allocation, computed by quadrature
    (error < 5e-4 on the most extreme tables, about 1e-5 on most) and cached, so `choose` is
    as cheap as for the other strategies and the logged propensity is exact. With no
    invocations every posterior is uniform: equal shares.
    """

    name = "ThompsonSampling"

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        from bandit.posterior import (
            best_arm_probabilities,
            best_arm_probabilities_t,
            beta_parameters,
            student_t_parameters,
        )

        if self.reward == CONTINUOUS:
            probabilities, _ = best_arm_probabilities_t(student_t_parameters(metrics))
        else:
            probabilities, _ = best_arm_probabilities([beta_parameters(m) for m in metrics])
        return probabilities

    def sample(self, metrics: Sequence[VariantMetrics], rng: random.Random) -> str:
        """Classic Thompson step: one posterior draw per variant, the largest wins.

        Distributed exactly as `choose` (the allocation is the law of this argmax) but costs
        K `betavariate` calls instead of a quadrature when the metrics change on every call,
        as in a simulation with instant feedback. The propensity is not known from a draw;
        use `choose`/`select` when it must be logged.
        """
        from bandit.posterior import beta_parameters, student_t_parameters

        metrics = check_metrics(metrics)
        if self.reward == CONTINUOUS:
            draws = [
                loc + scale * rng.gauss() / math.sqrt(rng.gammavariate(dof / 2.0, 2.0) / dof)
                for loc, scale, dof in student_t_parameters(metrics)
            ]
            return metrics[draws.index(max(draws))].variant_name
        best_name, best_draw = "", -1.0
        for m in metrics:
            draw = rng.betavariate(*beta_parameters(m))
            if draw > best_draw:
                best_name, best_draw = m.variant_name, draw
        return best_name
