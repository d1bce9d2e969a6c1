"""The A/B testing API for one stage: routes, functions, tables, event log, alarms."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Acknowledgment, CfnOutput, Duration, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from abtest.http.routes import ROUTES, Need
from infra import nag
from infra.api import ServiceApi
from infra.functions import API_HANDLER, ServiceFunctions
from infra.monitoring import Alarms, service_dashboard
from infra.settings import Settings
from infra.storage import EVENTS_PREFIX, REJECTED_PREFIX, EventLog, Tables

ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"


def allow(fn: lambda_.Function, actions: list[str], resources: list[str]) -> None:
    fn.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))


@dataclass(frozen=True, slots=True)
class _Provision:
    """What the stack gives a route's function for one of its needs."""

    environment: dict[str, str]  # read by the handler's environment model (`lambdas/wiring.py`)
    grants: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (actions, resources)


class ApiStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, settings: Settings, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        s = settings
        tables = Tables(self, "Tables", s)
        event_log = EventLog(self, "EventLog", s)
        events_dlq = self._queue(
            "EventsDeadLetterQueue", f"abtest-undelivered-events-{s.stage_name}"
        )
        failed_dlq = self._queue("FailedEventsQueue", f"abtest-failed-aggregations-{s.stage_name}")

        endpoint_arn = self.format_arn(
            service="sagemaker", resource="endpoint", resource_name=f"{s.endpoint_prefix}*"
        )
        endpoint_config_arn = self.format_arn(
            service="sagemaker",
            resource="endpoint-config",
            resource_name=f"{s.endpoint_prefix}*",
        )
        factory = ServiceFunctions(self, "Functions", s)
        # One function per route, given what the route's entry says it needs.
        provisions = {
            Need.ENDPOINTS: _Provision(
                {"METRICS_TABLE": tables.metrics.table_name},
                [(["dynamodb:GetItem"], [tables.metrics.table_arn])],
            ),
            Need.ENDPOINT_CACHE: _Provision(
                {"METRICS_CACHE_SECONDS": str(s.metrics_cache_seconds)}
            ),
            Need.ASSIGNMENTS: _Provision(
                {
                    "ASSIGNMENT_TABLE": tables.assignment.table_name,
                    "ASSIGNMENT_TTL_SECONDS": str(s.assignment_ttl_seconds),
                },
                [(["dynamodb:GetItem", "dynamodb:PutItem"], [tables.assignment.table_arn])],
            ),
            Need.EVENTS: _Provision(
                {
                    "DELIVERY_STREAM_NAME": event_log.stream.delivery_stream_name,
                    "DEAD_LETTER_QUEUE_URL": events_dlq.queue_url,
                },
                [
                    (["firehose:PutRecordBatch"], [event_log.stream.delivery_stream_arn]),
                    (["sqs:SendMessage"], [events_dlq.queue_arn]),
                ],
            ),
            Need.MODELS: _Provision({}, [(["sagemaker:InvokeEndpoint"], [endpoint_arn])]),
        }
        fns: dict[str, lambda_.Function] = {}
        for route in ROUTES:
            given = [provisions[need] for need in sorted(route.needs)]
            environment = {"ROUTE": route.name}
            for provision in given:
                environment.update(provision.environment)
            fn = fns[route.name] = factory.function(
                route.name,
                environment=environment,
                handler=API_HANDLER,
                memory_mb=s.api_memory_mb,
                timeout_seconds=s.api_timeout_seconds,
            )
            for provision in given:
                for actions, resources in provision.grants:
                    allow(fn, actions, resources)
        fns["metrics"] = factory.function(
            "metrics",
            environment={
                "METRICS_TABLE": tables.metrics.table_name,
                "REJECTED_PREFIX": REJECTED_PREFIX,
            },
            memory_mb=s.metrics_memory_mb,
            timeout_seconds=s.metrics_timeout_seconds,
        )
        fns["register"] = factory.function(
            "register",
            environment={
                "METRICS_TABLE": tables.metrics.table_name,
                "ENDPOINT_PREFIX": s.endpoint_prefix,
            },
            memory_mb=s.register_memory_mb,
            timeout_seconds=s.register_timeout_seconds,
        )
        metrics = tables.metrics.table_arn
        allow(
            fns["metrics"],
            [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:ConditionCheckItem",
            ],
            [metrics],
        )
        allow(
            fns["metrics"],
            ["s3:GetObject"],
            [event_log.bucket.arn_for_objects(EVENTS_PREFIX + "*")],
        )
        allow(
            fns["metrics"],
            ["s3:PutObject"],
            [event_log.bucket.arn_for_objects(REJECTED_PREFIX + "*")],
        )
        allow(
            fns["register"],
            [
                "sagemaker:DescribeEndpoint",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:ListTags",
            ],
            [endpoint_arn, endpoint_config_arn],
        )
        allow(
            fns["register"],
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [metrics],
        )

        # S3 invokes the metrics function asynchronously: retry, then park the event.
        fns["metrics"].configure_async_invoke(
            retry_attempts=s.metrics_retry_attempts,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(failed_dlq),
        )
        event_log.bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(fns["metrics"]),
            s3.NotificationKeyFilter(prefix=EVENTS_PREFIX),
        )
        events.Rule(
            self,
            "EndpointStateChange",
            rule_name=f"abtest-register-{s.stage_name}",
            description="Registers A/B testing endpoints when they change state.",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[ENDPOINT_STATE_CHANGE],
                detail={"EndpointName": [{"prefix": s.endpoint_prefix}]},
            ),
            targets=[
                targets.LambdaFunction(
                    fns["register"],
                    dead_letter_queue=failed_dlq,
                    retry_attempts=4,
                    max_event_age=Duration.hours(2),
                )
            ],
        )

        api = ServiceApi(self, "Api", s, {route.name: fns[route.name] for route in ROUTES})

        alarms = Alarms(self, "Alarms", s.stage_name, s.alarm_email)
        alarms.queue_depth("UndeliveredEventsAlarm", events_dlq, "Events Firehose refused")
        alarms.queue_depth("FailedAggregationsAlarm", failed_dlq, "Failed event objects")
        alarms.add("Api5xxAlarm", api.server_errors, "The API answered with a 5xx.")
        for name, fn in fns.items():
            alarms.function_errors(fn, name)
        service_dashboard(self, s.stage_name, fns, api.server_errors, [events_dlq, failed_dlq])

        CfnOutput(self, "ApiUrl", value=api.url, description="Base URL: POST <url>invocation")
        CfnOutput(self, "AssignmentTableName", value=tables.assignment.table_name)
        CfnOutput(self, "MetricsTableName", value=tables.metrics.table_name)
        CfnOutput(self, "EventBucketName", value=event_log.bucket.bucket_name)
        if s.auth == "api_key":
            CfnOutput(
                self,
                "ApiKeyId",
                value=api.api_key_id,
                description="aws apigateway get-api-key --include-value --api-key <id>",
            )

        self._suppress(s, event_log, [events_dlq, failed_dlq], fns)

    def _queue(self, construct_id: str, name: str) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            queue_name=name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )

    def _suppress(
        self,
        s: Settings,
        event_log: EventLog,
        queues: list[sqs.Queue],
        fns: dict[str, lambda_.Function],
    ) -> None:
        # cdk-nag names a bucket ARN by the bucket's logical id.
        bucket = self.resolve(event_log.bucket.node.default_child.logical_id)
        for queue in queues:
            nag.suppress(
                queue,
                "SQS3",
                "This queue is itself a dead-letter queue; an alarm watches its depth.",
            )
        nag.suppress(
            event_log.bucket,
            "S1",
            "Only Firehose writes and only the metrics function reads this bucket; CloudTrail "
            "data events are the audit trail if one is needed, at no standing cost.",
        )
        nag.suppress(
            event_log.stream,
            "IAM5",
            "CDK's Firehose S3 destination grant: Firehose writes objects under any key of "
            "this one bucket, and the wildcard actions are the ones its delivery needs.",
            *(
                f"Action::s3:{a}*"
                for a in ("GetObject", "GetBucket", "List", "DeleteObject", "Abort")
            ),
            f"Resource::<{bucket}.Arn>/*",
        )
        endpoints = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        models = [r.name for r in ROUTES if Need.MODELS in r.needs]
        for name in (*models, "register"):
            nag.suppress(
                fns[name].role,
                "IAM5",
                "Only endpoints named with the A/B testing prefix: the allow-list of what the "
                "API may invoke and what the register function may read.",
                f"Resource::{endpoints}:endpoint/{s.endpoint_prefix}*",
                *(
                    [f"Resource::{endpoints}:endpoint-config/{s.endpoint_prefix}*"]
                    if name == "register"
                    else []
                ),
            )
        nag.suppress(
            fns["metrics"].role,
            "IAM5",
            "The metrics function reads only Firehose's event objects and writes only the "
            "lines it rejects, each under its own prefix.",
            f"Resource::<{bucket}.Arn>/{EVENTS_PREFIX}*",
            f"Resource::<{bucket}.Arn>/{REJECTED_PREFIX}*",
        )
        for fn in fns.values():
            nag.suppress(
                fn,
                "L1",
                f"{s.python_runtime} is the runtime the service is tested on and the Powertools "
                "layer is published for; a newer one is adopted deliberately, with the tests.",
            )
        nag.suppress(
            self.node.find_child("BucketNotificationsHandler050a0587b7544547bf325f094a3db834"),
            "IAM4",
            "CDK's own bucket-notification handler, run only at deploy time, uses the "
            "AWS basic execution policy.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        )
        Validations.of(self).acknowledge(
            Acknowledgment(
                id="CloudFormation-Validate::W7001",
                reason="The Firehose L2 adds a CIDR mapping used only for HTTP destinations.",
            )
        )
