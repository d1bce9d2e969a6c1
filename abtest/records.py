"""What the store holds: assignments, endpoint metrics records, count deltas."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

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


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """What registration knows about an endpoint: strategy parameters and variants."""

    endpoint_name: str
    strategy: str
    epsilon: float
    warmup: int
    variants: tuple[VariantConfig, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The metrics record: the allow-list of endpoints and their counters."""

    endpoint_name: str
    strategy: str
    epsilon: float
    warmup: int
    variant_metrics: tuple[VariantMetrics, ...]
    status: str = ACTIVE
    updated_at: float = 0.0

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(m.variant_name for m in self.variant_metrics)


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


class ConversionKey(NamedTuple):
    """One conversion, as the request path deduplicates it and aggregation counts it once."""

    endpoint_name: str
    user_id: str
    inference_id: str


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
    # Conversions left uncounted because another delivered object already counted them.
    duplicate_conversions: int = 0


class AssignmentKind(StrEnum):
    """How an invocation's variant was chosen; the `assignment` of responses and events."""

    NEW = "new"  # picked now by the endpoint's strategy
    EXISTING = "existing"  # the user's stored variant
    MANUAL = "manual"  # named by the request; the stored assignment is untouched
    FALLBACK = "fallback"  # the store was unreachable: the endpoint's own weights chose
