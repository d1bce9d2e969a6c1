"""WeightedSampling: the initial weights, ignoring all feedback (also the warm-up strategy)."""

from __future__ import annotations

from bandit.metrics import VariantMetrics
from bandit.strategy import Strategy


class WeightedSampling(Strategy):
    """Allocation proportional to `initial_variant_weight`; all weights zero means uniform."""

    name = "WeightedSampling"

    def _weights(self, metrics: tuple[VariantMetrics, ...]) -> list[float]:
        weights = [float(m.initial_variant_weight) for m in metrics]
        if not any(weights):
            return [1.0] * len(metrics)
        return weights
