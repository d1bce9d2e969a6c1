"""Alarms and dashboards: what wakes someone up, and what a user looks at.

Per-variant business metrics are the ones the metrics function publishes
(Powertools EMF, namespace `abtest`) with dimensions `endpoint_name` and
`variant_name`; names live here so the dashboards and the handler agree. The
request path's operational counts (`abtest.ports.Count`: fallbacks, model errors,
duplicate conversions) are EMF metrics in the same namespace, charted per endpoint; so is
the metrics function's count of event objects it rejected most of, which also alarms.

The models' health per variant is SageMaker's own (namespace `AWS/SageMaker`, dimensions
`EndpointName`, `VariantName`): every invocation, through the API or not, is in it. The
lifecycle is not a metric (a state holds between changes, and a metric only has points when
something is published): its widget queries the structured line each change logs.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from abtest.ports import Count, VariantMetric
from abtest.usecases.admin import LIFECYCLE_LOG_FIELDS
from infra.functions import SERVICE_NAME

NAMESPACE = "abtest"
VARIANT_DIMENSIONS = ("endpoint_name", "variant_name")
INVOCATIONS, CONVERSIONS, REWARD = (str(metric) for metric in VariantMetric)
PERIOD = Duration.minutes(5)
COUNT_TITLES = {
    Count.FALLBACKS: "Fallbacks (store unreachable)",
    Count.MODEL_ERRORS: "Model errors",
    Count.DUPLICATE_CONVERSIONS: "Duplicate conversions",
    Count.UNLOGGED_INVOCATIONS: "Invocations only in the function log",
    Count.MOSTLY_REJECTED_OBJECTS: "Event objects mostly rejected",
}


def variant_metric(name: str, endpoint_name: str, variant_name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"endpoint_name": endpoint_name, "variant_name": variant_name},
        statistic="Sum",
        period=PERIOD,
    )


def object_count(count: Count) -> cloudwatch.Metric:
    """A count that belongs to no endpoint (an event object's): Powertools gives it only the
    `service` dimension, the functions' POWERTOOLS_SERVICE_NAME."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=str(count),
        dimensions_map={"service": SERVICE_NAME},
        statistic="Sum",
        period=PERIOD,
    )


def count_search(count: Count) -> cloudwatch.MathExpression:
    """One of the request path's counts, for every endpoint (and variant, where it has one)."""
    return cloudwatch.MathExpression(
        expression=f"SEARCH('Namespace=\"{NAMESPACE}\" MetricName=\"{count}\"', 'Sum', 300)",
        label="",
        period=PERIOD,
    )


# SageMaker's per-variant invocation metrics. Invocation4XXErrors and Invocation5XXErrors are
# 1 for a request the model answered 4xx (5xx), 0 otherwise: their Average is the error rate.
# ModelLatency is in microseconds, the model container's time for one request.
SAGEMAKER_NAMESPACE = "AWS/SageMaker"
SAGEMAKER_DIMENSIONS = ("EndpointName", "VariantName")
ERROR_RATE_METRICS = {"Invocation5XXErrors": "5xx", "Invocation4XXErrors": "4xx"}
MODEL_LATENCY = "ModelLatency"
LATENCY_PERCENTILES = ("p50", "p99")


def sagemaker_search(metric_name: str, statistic: str, label: str) -> cloudwatch.MathExpression:
    """Every variant of every SageMaker endpoint of the region (as the API's own per-variant
    searches, not narrowed to the stage: a search matches dimension values by token)."""
    dims = ",".join(SAGEMAKER_DIMENSIONS)
    return cloudwatch.MathExpression(
        expression=(
            f"SEARCH('{{{SAGEMAKER_NAMESPACE},{dims}}} MetricName=\"{metric_name}\"', "
            f"'{statistic}', 300)"
        ),
        label=label,
        period=PERIOD,
    )


def lifecycle_query(limit: int = 100) -> list[str]:
    """The newest lifecycle changes, with the state each left the endpoint in."""
    return [
        f"fields @timestamp, {', '.join(LIFECYCLE_LOG_FIELDS)}",
        "filter ispresent(lifecycle_action)",
        "sort @timestamp desc",
        f"limit {limit}",
    ]


def per_variant_search(name: str, label: str) -> cloudwatch.MathExpression:
    """Every variant of every endpoint, found at view time (variants come and go)."""
    dims = ",".join(VARIANT_DIMENSIONS)
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{{NAMESPACE},{dims}}} MetricName=\"{name}\"', 'Sum', 300)",
        label=label,
        period=PERIOD,
    )


class Alarms(Construct):
    """An encrypted SNS topic, optionally with an e-mail subscription, as every alarm's action."""

    def __init__(self, scope: Construct, construct_id: str, stage_name: str, email: str) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"abtest-alarms-{stage_name}",
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
        # CloudWatch must be allowed to publish to a topic under the AWS-managed key.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=[self.topic.topic_arn],
            )
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.alarms: list[cloudwatch.Alarm] = []

    def add(self, alarm_id: str, metric: cloudwatch.IMetric, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            alarm_id,
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)

    def queue_depth(self, alarm_id: str, queue: sqs.IQueue, what: str) -> None:
        self.add(
            alarm_id,
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Max"),
            f"{what} are waiting in {queue.queue_name}: inspect and redrive them.",
        )

    def function_errors(self, fn: lambda_.IFunction, name: str) -> None:
        self.add(
            f"{name}-errors",
            fn.metric_errors(period=PERIOD, statistic="Sum"),
            f"The {name} function raised errors.",
        )


def service_dashboard(
    scope: Construct,
    stage_name: str,
    functions: dict[str, lambda_.IFunction],
    api_errors: cloudwatch.IMetric,
    queues: list[sqs.IQueue],
    lifecycle_logs: list[str],
) -> cloudwatch.Dashboard:
    """`lifecycle_logs`: the log groups of the functions that change lifecycles."""
    dashboard = cloudwatch.Dashboard(scope, "Dashboard", dashboard_name=f"abtest-{stage_name}")
    dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Invocations per variant",
            left=[per_variant_search(INVOCATIONS, "")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Conversions per variant",
            left=[per_variant_search(CONVERSIONS, "")],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Reward per variant",
            left=[per_variant_search(REWARD, "")],
            width=8,
        ),
    )
    dashboard.add_widgets(
        cloudwatch.GraphWidget(title="API 5xx", left=[api_errors], width=8),
        cloudwatch.GraphWidget(
            title="Function errors",
            left=[fn.metric_errors(period=PERIOD, label=n) for n, fn in functions.items()],
            width=8,
        ),
        cloudwatch.GraphWidget(
            title="Dead-letter queues",
            left=[q.metric_approximate_number_of_messages_visible(period=PERIOD) for q in queues],
            width=8,
        ),
    )
    dashboard.add_widgets(
        *(
            cloudwatch.GraphWidget(title=title, left=[count_search(count)], width=8)
            for count, title in COUNT_TITLES.items()
        )
    )
    dashboard.add_widgets(
        cloudwatch.GraphWidget(
            title="Model error rate per variant (SageMaker; 1 = every call)",
            left=[sagemaker_search(n, "Average", label) for n, label in ERROR_RATE_METRICS.items()],
            width=8,
        ),
        *(
            cloudwatch.GraphWidget(
                title=f"Model latency per variant, {percentile} (SageMaker, microseconds)",
                left=[sagemaker_search(MODEL_LATENCY, percentile, "")],
                width=8,
            )
            for percentile in LATENCY_PERCENTILES
        ),
    )
    dashboard.add_widgets(
        cloudwatch.LogQueryWidget(
            title="Lifecycle changes, newest first: the state each left (audit log: /admin/show)",
            log_group_names=lifecycle_logs,
            query_lines=lifecycle_query(),
            view=cloudwatch.LogQueryVisualizationType.TABLE,
            width=24,
        ),
    )
    return dashboard


def reward_rate(endpoint_name: str, variant_name: str, index: int) -> cloudwatch.MathExpression:
    """Reward per invocation for one variant over each period; `index` keeps metric ids apart."""
    reward, inv = f"reward{index}", f"inv{index}"
    return cloudwatch.MathExpression(
        expression=f"IF({inv} > 0, {reward} / {inv}, 0)",
        using_metrics={
            reward: variant_metric(REWARD, endpoint_name, variant_name),
            inv: variant_metric(INVOCATIONS, endpoint_name, variant_name),
        },
        label=variant_name,
        period=PERIOD,
    )
