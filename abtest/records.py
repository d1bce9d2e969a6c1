"""What the store holds: assignments, endpoint metrics records, count deltas."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import bandit
from bandit.metrics import VariantMetrics

ACTIVE = "active"
DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Assignment:
    """A user's sticky variant on one endpoint. `ttl` is epoch seconds, from the injected clock."""

    endpoint_name: str
    user_id: str
    variant_name: str
    strategy: str
    propensity: float
    assigned_at: float
    ttl: int


@dataclass(frozen=True, slots=True)
class VariantConfig:
    name: str
    initial_weight: float = 1.0


# A strategy's parameters by name, as `bandit.check_params` returns them (every declared one).
StrategyParams = dict[str, float | int]


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """What registration knows about an endpoint: its strategy, that strategy's parameters
    (every declared one, already checked), the warm-up and the variants."""

    endpoint_name: str
    strategy: str
    strategy_params: StrategyParams = field(hash=False)
    warmup: int
    variants: tuple[VariantConfig, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The metrics record: the allow-list of endpoints and their counters."""

    endpoint_name: str
    strategy: str
    strategy_params: StrategyParams = field(hash=False)
    warmup: int
    variant_metrics: tuple[VariantMetrics, ...]
    status: str = ACTIVE
    updated_at: float = 0.0

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(m.variant_name for m in self.variant_metrics)


def params_from_epsilon(strategy: str, epsilon: float | None) -> StrategyParams:
    """The parameters of a record written before `strategy_params` existed.

    Such records kept one `epsilon` whatever the strategy; it meant something only to a
    strategy declaring an `epsilon` parameter, and is dropped for the others.
    """
    declared = bandit.STRATEGIES.get(strategy)
    if epsilon is None or declared is None:
        return {}
    return {p.name: float(epsilon) for p in declared.parameters if p.name == "epsilon"}


@dataclass(slots=True)
class VariantCounts:
    """A delta to add to one variant's counters."""

    invocation_count: int = 0
    conversion_count: int = 0
    reward_sum: float = 0.0

    def add(self, other: VariantCounts) -> None:
        self.invocation_count += other.invocation_count
        self.conversion_count += other.conversion_count
        self.reward_sum += other.reward_sum


class EventKey(NamedTuple):
    """One event that must count once however often it was logged.

    Conversions always (a client retries them); invocations only in objects a redrive
    wrote, where the same event may also have reached the log through Firehose.
    `event_type` is the event's `type` field, so the two kinds never share a key.
    """

    endpoint_name: str
    user_id: str
    inference_id: str
    event_type: str


# endpoint_name -> variant_name -> delta
CountsByEndpoint = dict[str, dict[str, VariantCounts]]


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A delivered line aggregation could not use, kept aside with the reason."""

    line_number: int
    reason: str
    line: str


@dataclass(slots=True)
class AggregationResult:
    object_key: str
    applied: bool
    events: int = 0
    counts: CountsByEndpoint = field(default_factory=dict)
    rejected: list[RejectedLine] = field(default_factory=list)
    # Keyed events left uncounted because a delivered object already counted them.
    duplicates: int = 0


class AssignmentKind(StrEnum):
    """How an invocation's variant was chosen; the `assignment` of responses and events."""

    NEW = "new"  # picked now by the endpoint's strategy
    EXISTING = "existing"  # the user's stored variant
    MANUAL = "manual"  # named by the request; the stored assignment is untouched
    FALLBACK = "fallback"  # the store was unreachable: the endpoint's own weights chose
