"""Per-variant counters, the only input the strategies see."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VariantMetrics:
    """Counters of one variant. Frozen and hashable so allocations can be cached on them."""

    variant_name: str
    initial_variant_weight: float = 1.0
    invocation_count: int = 0
    conversion_count: int = 0
    reward_sum: float = 0.0
    # The decision's unit is a *trial*: an invocation, or (unit "user") a user's assignment.
    # invocation_count / conversion_count / reward_sum keep their names and count trials.
    reward_sq_sum: float = 0.0  # sum of each trial's outcome squared (continuous rewards)
    # Inverse-propensity sums over the trials that carry a logged assignment propensity p
    # (unit "user": every new assignment; zero for the "invocation" unit), y the trial's outcome
    # (0 for a trial without a counted conversion):
    weight_sum: float = 0.0  # sum of 1/p
    weight_sq_sum: float = 0.0  # sum of 1/p^2
    weighted_reward_sum: float = 0.0  # sum of y/p
    weighted_reward_cross_sum: float = 0.0  # sum of y/p^2
    weighted_reward_sq_sum: float = 0.0  # sum of y^2/p^2

    def __post_init__(self) -> None:
        if not isinstance(self.variant_name, str) or not self.variant_name:
            raise ValueError("variant_name must be a non-empty string")
        for name in (
            "initial_variant_weight",
            "invocation_count",
            "conversion_count",
            "reward_sum",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
