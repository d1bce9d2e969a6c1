"""The stats route's bodies: an endpoint's counters, allocation and decision. The admin
routes show an endpoint's variants with the same body (`variant_bodies`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictStr

from abtest import guardrails
from abtest.config_types import NAME_PATTERN, ExperimentSettings
from abtest.http.bodies import EXAMPLE_ENDPOINT, Body, RequestBody, example
from abtest.records import Endpoint
from abtest.usecases.stats import StatsResult


class StatsRequest(RequestBody):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT)

    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)

    def to_core(self) -> str:
        return self.endpoint_name


class VariantMetricsBody(Body):
    endpoint_name: str
    variant_name: str
    initial_variant_weight: float
    users: int = Field(description="Users newly assigned to the variant (each assignment once)")
    converted_users: int = Field(
        description="Assigned users whose first conversion came within the attribution window"
    )
    invocation_count: int = Field(description="Invocations the strategy routed to the variant")
    conversion_count: int = Field(
        description="Conversions within the attribution window (every one, not only the first)"
    )
    reward_sum: float = Field(description="The sum of those conversions' rewards")
    late_conversions: int = Field(
        description="Conversions later than the attribution window: logged, not counted"
    )
    model_calls: int = Field(
        description="Model calls logged with their latency and outcome (manual ones included)"
    )
    model_errors: int = Field(description="Of those, the calls that failed (answered 502)")
    error_rate: float | None = Field(
        description="model_errors / model_calls; null before any call was logged"
    )
    latency_ms: dict[str, float | None] = Field(
        description="p50, p95, p99 of the calls' latency: the upper bound of the bucket that "
        "holds each (buckets 1, 2, 5, 10, 20, 50 ... 50000 ms, so within a factor 2 to 2.5); "
        "null without calls or beyond 50000 ms"
    )
    demoted: str | None = Field(
        None,
        description="Why a guardrail demoted the variant (allocation 0, never the winner), "
        "null if it did not",
    )


class StatsResponse(Body):
    endpoint_name: str
    strategy: str
    epsilon: float | None = Field(
        description="EpsilonGreedy's epsilon; null for a strategy without one "
        "(kept for the article's clients: strategy_params has every parameter)"
    )
    strategy_params: dict[str, float | int] = Field(
        description="The strategy's parameters by name, every declared one"
    )
    warmup: int
    status: str
    settings: ExperimentSettings = Field(description="What the experiment measures")
    variant_metrics: list[VariantMetricsBody]
    allocation: dict[str, float]
    decision: dict[str, Any]

    @classmethod
    def of(cls, result: StatsResult) -> StatsResponse:
        endpoint = result.endpoint
        return cls(
            endpoint_name=endpoint.endpoint_name,
            strategy=endpoint.strategy,
            epsilon=endpoint.strategy_params.get("epsilon"),
            strategy_params=endpoint.strategy_params,
            warmup=endpoint.warmup,
            status=endpoint.status,
            settings=endpoint.settings,
            variant_metrics=variant_bodies(endpoint, result.demoted),
            allocation=result.allocation,
            decision=result.decision,
        )


def variant_bodies(endpoint: Endpoint, demoted: dict[str, str]) -> list[VariantMetricsBody]:
    return [
        VariantMetricsBody(
            endpoint_name=endpoint.endpoint_name,
            variant_name=v.variant_name,
            initial_variant_weight=v.initial_variant_weight,
            model_calls=guardrails.model_calls(v.counts),
            error_rate=guardrails.error_rate(v.counts),
            latency_ms={
                f"p{round(q * 100)}": guardrails.latency_quantile(v.counts, q)
                for q in guardrails.QUANTILES
            },
            demoted=demoted.get(v.variant_name),
            **{
                name: getattr(v.counts, name)
                for name in VariantMetricsBody.model_fields
                if hasattr(v.counts, name)
            },
        )
        for v in endpoint.variants
    ]
