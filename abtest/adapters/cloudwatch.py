"""Telemetry as CloudWatch metrics in embedded metric format (a log line, no API call)."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from abtest.ports import Count


class EmfTelemetry:
    """One EMF document per count, charted on the API stack's dashboard (`infra/monitoring.py`)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def count(
        self, name: Count, endpoint_name: str | None, variant_name: str | None = None
    ) -> None:
        # Its own document, so each count carries its own endpoint/variant dimensions. One
        # without an endpoint has Powertools' `service` dimension only, which an alarm can name.
        with single_metric(
            name=str(name), unit=MetricUnit.Count, value=1, namespace=self.namespace
        ) as metric:
            if endpoint_name:
                metric.add_dimension(name="endpoint_name", value=endpoint_name)
            if variant_name:
                metric.add_dimension(name="variant_name", value=variant_name)
