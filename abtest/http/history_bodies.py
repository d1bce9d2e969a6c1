"""The history route's request and response bodies: the experiment over time, as the
dashboard charts it. Apart from the application's routes' bodies, so that a function serving
those imports none of these.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt, StrictStr, field_validator

from abtest.config_types import NAME_PATTERN
from abtest.history import DEFAULT_LIMIT, MAX_LIMIT, RECENT
from abtest.http.bodies import EXAMPLE_ENDPOINT, Body, RequestBody, example
from abtest.usecases.history import HistoryQuery, HistoryResult


class HistoryRequest(RequestBody):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT, limit=100)

    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    limit: StrictInt = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="How many of the newest snapshots"
    )

    @field_validator("limit", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        # The document's type is JSON Schema's integer, any number without a fraction: 500.0
        # is one, as some encoders write it, and was refused.
        if type(value) is float and value.is_integer():
            return int(value)
        return value

    def to_core(self) -> HistoryQuery:
        return HistoryQuery(self.endpoint_name, self.limit)


class VariantSnapshotBody(Body):
    variant_name: str
    invocation_count: int
    conversion_count: int
    reward_sum: float
    allocation: float = Field(description="Its share of new users after this aggregation")
    probability_best: float | None
    estimate: float | None = Field(description="The decision's estimate of its reward rate")
    estimate_interval: tuple[float, float] | None = Field(description="... and its 95% interval")


class SnapshotBody(Body):
    seq: int = Field(description="Its number: 1 for the endpoint's first aggregation")
    taken_at: float = Field(description="Epoch seconds")
    strategy: str = Field(description="The strategy that allocated (WeightedSampling in warm-up)")
    warming_up: bool
    winner: str | None
    reason: str
    variants: list[VariantSnapshotBody]


class HistoryResponse(Body):
    endpoint_name: str
    recent: int = Field(
        description="Snapshots kept at full resolution; older ones are thinned, ever coarser"
    )
    snapshots: list[SnapshotBody] = Field(description="Oldest first")

    @classmethod
    def of(cls, result: HistoryResult) -> HistoryResponse:
        return cls(
            endpoint_name=result.endpoint_name,
            recent=RECENT,
            snapshots=[
                SnapshotBody(
                    seq=s.seq,
                    taken_at=s.taken_at,
                    strategy=s.strategy,
                    warming_up=s.warming_up,
                    winner=s.winner,
                    reason=s.reason,
                    variants=[
                        VariantSnapshotBody.model_validate(v, from_attributes=True)
                        for v in s.variants
                    ],
                )
                for s in result.snapshots
            ],
        )
