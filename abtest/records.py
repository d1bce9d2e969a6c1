"""What the store holds: assignments, endpoint metrics records, count deltas."""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, make_dataclass
from enum import StrEnum
from functools import cache
from typing import Any, NamedTuple

from pydantic import BaseModel

import bandit
from abtest.config_types import ExperimentSettings
from abtest.lifecycle import Action, Lifecycle

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
    settings: ExperimentSettings = field(default_factory=ExperimentSettings)


@dataclass(frozen=True, slots=True)
class Figures:
    """What an endpoint's counters say, worked out off the request path (when aggregation
    or registration changes the record) and stored with the record: the allocation a new
    user gets and the strategy that allocates, and /stats' decision. Only for the record
    whose `basis` it carries: any other counters, strategy or variants make it stale."""

    basis: str
    strategy: str
    allocation: dict[str, float] = field(hash=False)
    decision: dict[str, Any] = field(hash=False)
    # The variants a guardrail demoted (allocation 0, never the decision's winner), with why.
    demoted: dict[str, str] = field(default_factory=dict, hash=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Figures:
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class _ServiceCounts:
    """A variant's service counters, or a delta to add to them. Declared here once, a line
    each (the latency buckets, one counter per `LATENCY_BOUNDS_MS`, are added to these by
    `VariantCounts`): the stores, the aggregation's deltas and /stats iterate over `COUNTERS`.

    A first conversion is an assignment's first counted conversion within the attribution
    window; p is the propensity logged with the assignment (`bandit.VariantMetrics` says
    which of these each unit's decision reads, `abtest.usecases.endpoints` maps them).
    """

    invocation_count: int = 0  # invocations the strategy chose (new or existing assignment)
    conversion_count: int = 0  # conversions within the window
    reward_sum: float = 0.0  # their rewards
    reward_sq_sum: float = 0.0  # their rewards squared
    users: int = 0  # new assignments
    converted_users: int = 0  # first conversions
    user_reward_sum: float = 0.0  # first conversions' rewards
    user_reward_sq_sum: float = 0.0  # ... squared
    weight_sum: float = 0.0  # 1/p over new assignments
    weight_sq_sum: float = 0.0  # 1/p^2 over new assignments
    weighted_reward_sum: float = 0.0  # y/p over first conversions (y the reward)
    weighted_reward_cross_sum: float = 0.0  # y/p^2 over first conversions
    weighted_reward_sq_sum: float = 0.0  # y^2/p^2 over first conversions
    late_conversions: int = 0  # conversions later than the window: logged, not counted
    # Model calls that failed (answered 502), of those logged with an outcome: every call
    # of the variant, the experiment's and manual ones alike (what the guardrail reads).
    model_errors: int = 0

    def __add__(self, other: VariantCounts) -> VariantCounts:
        return VariantCounts(*(getattr(self, c.name) + getattr(other, c.name) for c in COUNTERS))

    def __bool__(self) -> bool:
        """False for a delta that changes nothing."""
        return any(getattr(self, c.name) for c in COUNTERS)

    def as_dict(self) -> dict[str, int | float]:
        return {c.name: getattr(self, c.name) for c in COUNTERS}


# The upper bounds (milliseconds) of the model-call latency buckets, a 1-2-5 series: each
# bucket counts the calls slower than the bound before and at most as slow as its own, the
# last one every call slower than the highest bound. Counters, so that they merge across
# event objects by the stores' atomic addition; a quantile read from them is known to the
# bucket that holds it, within a factor 2 to 2.5 (`abtest.guardrails.latency_quantile`).
LATENCY_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
LATENCY_COUNTERS = (
    *(f"latency_le_{bound}ms" for bound in LATENCY_BOUNDS_MS),
    f"latency_over_{LATENCY_BOUNDS_MS[-1]}ms",
)

# The service counters and a counter per latency bucket (generated, so that the bounds are
# declared once): every model call logged with its latency adds one to its bucket.
VariantCounts = make_dataclass(
    "VariantCounts",
    [(name, int, field(default=0)) for name in LATENCY_COUNTERS],
    bases=(_ServiceCounts,),
    frozen=True,
    slots=True,
)
VariantCounts.__module__ = __name__
VariantCounts.__doc__ = _ServiceCounts.__doc__


def latency_counter(latency_ms: float) -> str:
    """The bucket counter a call of `latency_ms` adds one to."""
    return LATENCY_COUNTERS[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)]


class Counter(NamedTuple):
    name: str
    type: type[int] | type[float]


COUNTERS = tuple(
    Counter(f.name, int if f.type in ("int", int) else float) for f in fields(VariantCounts)
)


@dataclass(frozen=True, slots=True)
class VariantCounters:
    """One variant of an endpoint's record: its warm-up weight and its counters."""

    variant_name: str
    initial_variant_weight: float = 1.0
    counts: VariantCounts = field(default_factory=VariantCounts)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The metrics record: the allow-list of endpoints and their counters."""

    endpoint_name: str
    strategy: str
    strategy_params: StrategyParams = field(hash=False)
    warmup: int
    variants: tuple[VariantCounters, ...]
    status: str = ACTIVE
    updated_at: float = 0.0
    settings: ExperimentSettings = field(default_factory=ExperimentSettings)
    # Stored with the record, fresh or not (`fresh_figures`); not part of what it says.
    figures: Figures | None = field(default=None, compare=False, hash=False)
    # Changed only by compare-and-set (`Store.change_lifecycle`); figures do not depend on it.
    lifecycle: Lifecycle = field(default_factory=Lifecycle)

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.variant_name for v in self.variants)

    @property
    def serving_variants(self) -> tuple[VariantCounters, ...]:
        """The variants new users can get: all but the retired ones."""
        retired = self.lifecycle.retired
        return tuple(v for v in self.variants if v.variant_name not in retired)

    @property
    def basis(self) -> str:
        """A digest of everything figures are worked out from: every field but the stored
        figures, the status, the time and the lifecycle but its retired variants (so a field
        added later counts without a change here)."""
        inputs = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("figures", "status", "updated_at", "lifecycle")
        }
        if self.lifecycle.retired:  # they leave the allocation (absent: digests stay as were)
            inputs["retired"] = list(self.lifecycle.retired)
        if self.lifecycle.added:  # they warm up alone
            inputs["added"] = list(self.lifecycle.added_models)
        if self.lifecycle.weights:  # they replace the configured weights
            inputs["weights"] = list(self.lifecycle.weights)
        if self.lifecycle.reinstated:  # what the guardrails count from (`abtest.guardrails`)
            inputs["reinstated"] = self.lifecycle.reinstated
        text = json.dumps(inputs, sort_keys=True, default=_plain)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def weights(self) -> dict[str, float]:
        """Each variant's weight for WeightedSampling: set by hand, else the configured one."""
        manual = dict(self.lifecycle.weights)
        return {
            v.variant_name: manual.get(v.variant_name, v.initial_variant_weight)
            for v in self.variants
        }

    @property
    def allowed_actions(self) -> tuple[Action, ...]:
        """The lifecycle's, but weights only for a WeightedSampling endpoint (the one
        strategy that allocates by them)."""
        allowed = self.lifecycle.allowed_actions
        if self.strategy == bandit.WeightedSampling.name:
            return allowed
        return tuple(a for a in allowed if a is not Action.WEIGHTS)

    @property
    def fresh_figures(self) -> Figures | None:
        """The stored figures if they were worked out from this very record, else None."""
        figures = self.figures
        return figures if figures is not None and figures.basis == self.basis else None


def _plain(value: Any) -> Any:
    """`json.dumps`'s `default` for `Endpoint.basis`: the text `asdict` would give, one level
    at a time (json calls this again for what it holds). `asdict` copied every value deeply
    first: three quarters of a /stats call with 10 variants (`bench/api.py`)."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _field_names(type(value))}
    return repr(value)


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def params_from_epsilon(strategy: str, epsilon: float | None) -> StrategyParams:
    """The parameters of a record written before `strategy_params` existed.

    Such records kept one `epsilon` whatever the strategy; it meant something only to a
    strategy declaring an `epsilon` parameter, and is dropped for the others.
    """
    declared = bandit.STRATEGIES.get(strategy)
    if epsilon is None or declared is None:
        return {}
    return {p.name: float(epsilon) for p in declared.parameters if p.name == "epsilon"}


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
    # Keyed events left uncounted because a delivered object already counted them.
    duplicates: int = 0

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
    # The experiment is paused: a new user gets the champion, with certainty (propensity 1).
    PAUSED = "paused"
    # The experiment is concluded: the winner serves every user, with certainty (propensity 1).
    CONCLUDED = "concluded"
    FALLBACK = "fallback"  # the store was unreachable: no assignment read or kept
