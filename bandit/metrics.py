"""Per-variant counters, the only input the strategies see, and the kinds of reward."""

from __future__ import annotations

import math
from dataclasses import dataclass

# What a conversion's reward is: "binary" a rate in [0, 1] (Beta-Bernoulli), "continuous"
# any finite number such as revenue (a Gaussian model with unknown variance).
BINARY = "binary"
CONTINUOUS = "continuous"
REWARD_KINDS = (BINARY, CONTINUOUS)

_COUNTS = ("invocation_count", "conversion_count")
_NON_NEGATIVE = ("initial_variant_weight", "weight_sum", "weight_sq_sum")
_SQUARES = ("reward_sq_sum", "weighted_reward_sq_sum")
_SIGNED = ("reward_sum", "weighted_reward_sum", "weighted_reward_cross_sum")


def check_reward(reward: object) -> str:
    """The reward kind, or ValueError naming the valid ones."""
    if reward not in REWARD_KINDS:
        raise ValueError(f"reward must be one of {', '.join(REWARD_KINDS)}, got {reward!r}")
    return reward  # type: ignore[return-value]


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
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            if not math.isfinite(value) or value < 0 or value != int(value):
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        for name in (*_NON_NEGATIVE, *_SQUARES, *_SIGNED):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if value < 0 and name not in _SIGNED:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
