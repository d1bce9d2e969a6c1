"""What the store holds: assignments, endpoint metrics records, count deltas."""

from __future__ import annotations

import json
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

    def json_line(self) -> bytes:
        """The line as it is kept aside (S3 and local alike): one JSON object per line."""
        record = {"line_number": self.line_number, "reason": self.reason, "line": self.line}
        return json.dumps(record).encode() + b"\n"


@dataclass(slots=True)
class AggregationResult:
    object_key: str
    applied: bool
    events: int = 0
    counts: CountsByEndpoint = field(default_factory=dict)
    # Lines kept aside (streamed to the archive as they were found, never held) and the first.
    rejected: int = 0
    first_rejected: RejectedLine | None = None
    # Conversions left uncounted because another delivered object already counted them.
    duplicate_conversions: int = 0

    @property
    def mostly_rejected(self) -> bool:
        """More lines rejected than counted: events of another format or from another writer,
        most likely. Such an object is still applied (with what it had), so say so loudly."""
        return self.rejected > self.events


class AssignmentKind(StrEnum):
    """How an invocation's variant was chosen; the `assignment` of responses and events."""

    NEW = "new"  # picked now by the endpoint's strategy
    EXISTING = "existing"  # the user's stored variant
    MANUAL = "manual"  # named by the request; the stored assignment is untouched
    FALLBACK = "fallback"  # the store was unreachable: the endpoint's own weights chose
