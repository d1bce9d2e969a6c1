"""Telemetry as CloudWatch metrics in embedded metric format (a log line, no API call)."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric


class EmfTelemetry:
    def __init__(self, metrics: Metrics) -> None:
        self.namespace = metrics.namespace

    def count(self, name: str, endpoint_name: str, variant_name: str | None = None) -> None:
        # One EMF document per count, so each carries its own endpoint/variant dimensions.
        with single_metric(
            name=name, unit=MetricUnit.Count, value=1, namespace=self.namespace
        ) as metric:
            metric.add_dimension(name="endpoint_name", value=endpoint_name)
            if variant_name:
                metric.add_dimension(name="variant_name", value=variant_name)
