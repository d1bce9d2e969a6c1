"""Aggregates each event object Firehose delivers to S3 into the metrics table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from abtest.adapters.s3 import S3EventArchive, object_keys_from_s3_event
from abtest.ports import VariantMetric
from abtest.records import CountsByEndpoint
from abtest.usecases.aggregate import Aggregate
from lambdas.wiring import (
    BACKGROUND_CLIENT,
    AssignmentsEnvironment,
    EndpointsEnvironment,
    LambdaPorts,
    logger,
    metrics,
    register_snapstart_hooks,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


class MetricsEnvironment(AssignmentsEnvironment, EndpointsEnvironment):
    """What the metrics function reads (the API stack sets it).

    The assignment table too: aggregation claims each conversion's marker, so a conversion
    logged twice counts once.
    """

    rejected_prefix: str  # where rejected lines go; never counted themselves


env = MetricsEnvironment.load()
ports = LambdaPorts(env)
aggregate = Aggregate.from_ports(ports)
s3 = ports.client("s3", BACKGROUND_CLIENT)
register_snapstart_hooks(ports)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    results = []
    for bucket, key in object_keys_from_s3_event(event):
        if key.startswith(env.rejected_prefix):
            continue  # our own rejected-lines objects are for people, not for counting
        archive = S3EventArchive(bucket, client=s3, rejected_prefix=env.rejected_prefix)
        result = aggregate(archive, key)
        summary = {
            "object_key": key,
            "applied": result.applied,
            "events": result.events,
            "rejected": result.rejected,
        }
        logger.info("aggregated", extra=summary)
        if result.applied:
            publish_counts(result.counts)
        results.append(summary)
    return {"objects": results}


def publish_counts(counts: CountsByEndpoint) -> None:
    """Per-variant Invocations, Conversions and Reward for the stack's dashboard (EMF)."""
    for endpoint_name, variants in counts.items():
        for variant_name, delta in variants.items():
            for name, value in (
                (VariantMetric.INVOCATIONS, delta.invocation_count),
                (VariantMetric.CONVERSIONS, delta.conversion_count),
                (VariantMetric.REWARD, delta.reward_sum),
            ):
                with single_metric(
                    name=str(name), unit=MetricUnit.Count, value=value, namespace=metrics.namespace
                ) as metric:
                    metric.add_dimension(name="endpoint_name", value=endpoint_name)
                    metric.add_dimension(name="variant_name", value=variant_name)
