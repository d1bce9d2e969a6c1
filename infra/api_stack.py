"""The A/B testing API for one stage: routes, functions, tables, event log, alarms."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Acknowledgment, CfnOutput, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from abtest.events import EVENTS_PREFIX, REJECTED_PREFIX
from abtest.http.routes import ALL_ROUTES, ROUTES, Need
from abtest.ports import Count
from infra import nag
from infra.api import ServiceApi
from infra.functions import API_HANDLER, RETENTION, ServiceFunctions
from infra.monitoring import Alarms, object_count, service_dashboard
from infra.names import stage_prefix
from infra.settings import Settings
from infra.storage import EventLog, Tables
from lambdas.wiring import request_budget_seconds

ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
SET_WEIGHTS = "sagemaker:UpdateEndpointWeightsAndCapacities"
# Promoting a concluded winner (abtest.adapters.sagemaker): read the endpoint (its variants,
# its status), then set its production variants' weights to the winner's.
PROMOTION_ACTIONS = ["sagemaker:DescribeEndpoint", SET_WEIGHTS]
# The id CDK gives its singleton bucket-notification Lambda (aws-s3 notifications-resource-handler).
NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


def model_timeout_seconds(function_timeout: int) -> int:
    """The model's read timeout: the function's timeout less the rest of the request's path,
    so a hung model is answered 502 rather than cut off by the function's timeout."""
    return max(1, int(function_timeout - request_budget_seconds()))


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

        prefix = stage_prefix(s)
        endpoint_arn = self.format_arn(
            service="sagemaker", resource="endpoint", resource_name=f"{prefix}*"
        )
        endpoint_config_arn = self.format_arn(
            service="sagemaker", resource="endpoint-config", resource_name=f"{prefix}*"
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
                # Conversion markers are updated after their event (Store.mark_conversion_logged).
                [
                    (
                        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                        [tables.assignment.table_arn],
                    )
                ],
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
            # Snapshots are items of the metrics table, read by key: their numbers follow from
            # the endpoint's history counter (read with ENDPOINTS' GetItem, which the route has).
            Need.HISTORY: _Provision({}, [(["dynamodb:BatchGetItem"], [tables.metrics.table_arn])]),
            Need.MODELS: _Provision(
                # What the function's timeout leaves after the rest of the request's path.
                {"MODEL_TIMEOUT_SECONDS": str(model_timeout_seconds(s.api_timeout_seconds))},
                [(["sagemaker:InvokeEndpoint"], [endpoint_arn])],
            ),
            # A change is one transaction: the conditional lifecycle update and the audit
            # item's put (Store.change_lifecycle); counters are never written.
            Need.LIFECYCLE: _Provision(
                {}, [(["dynamodb:PutItem", "dynamodb:UpdateItem"], [tables.metrics.table_arn])]
            ),
            Need.LISTING: _Provision({}, [(["dynamodb:Scan"], [tables.metrics.table_arn])]),
            # Concluding sets the endpoint's production-variant weights to the winner's; it
            # reads the endpoint first (its variants, its status). This stage's endpoints only.
            Need.PROMOTION: _Provision({}, [(PROMOTION_ACTIONS, [endpoint_arn])]),
            # add-variant checks the variant is a production variant of the endpoint.
            Need.CATALOG: _Provision({}, [(["sagemaker:DescribeEndpoint"], [endpoint_arn])]),
        }
        fns: dict[str, lambda_.Function] = {}
        for route in ALL_ROUTES:
            given = [provisions[need] for need in sorted(route.needs)]
            environment = {"ROUTE": route.name}
            for provision in given:
                environment.update(provision.environment)
            fn = fns[route.function_name] = factory.function(
                route.function_name,
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
                # Aggregation claims each conversion's marker, so it counts once.
                "ASSIGNMENT_TABLE": tables.assignment.table_name,
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
                "ENDPOINT_PREFIX": prefix,
            },
            memory_mb=s.register_memory_mb,
            timeout_seconds=s.register_timeout_seconds,
        )
        metrics = tables.metrics.table_arn
        # Aggregation also concludes an `auto_conclude` endpoint (abtest.usecases.auto_conclude):
        # the same lifecycle transaction as /admin/conclude's (PutItem, UpdateItem), below.
        allow(
            fns["metrics"],
            [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:ConditionCheckItem",
                # The history's thinning (abtest.history): old snapshots deleted as they go.
                "dynamodb:DeleteItem",
            ],
            [metrics],
        )
        # Claims of conversion markers, so a conversion logged twice counts once.
        allow(fns["metrics"], ["dynamodb:UpdateItem"], [tables.assignment.table_arn])
        allow(
            fns["metrics"],
            ["s3:GetObject"],
            [event_log.bucket.arn_for_objects(EVENTS_PREFIX + "*")],
        )
        # Many rejected lines go up in parts: an upload that fails is aborted.
        allow(
            fns["metrics"],
            ["s3:PutObject", "s3:AbortMultipartUpload"],
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
        # Registration finishes a conclusion's pending promotion (Register): the endpoint is
        # back in service, when SageMaker takes new weights. Writes: Store.change_lifecycle.
        # (DescribeEndpoint, the promotion's other action, is among its reads above.)
        allow(fns["register"], [SET_WEIGHTS], [endpoint_arn])
        # An auto-conclusion promotes its winner like /admin/conclude does (Need.PROMOTION).
        allow(fns["metrics"], PROMOTION_ACTIONS, [endpoint_arn])

        # Callers invoke each function's published version (its SnapStart snapshot).
        live = {name: factory.live(fn) for name, fn in fns.items()}
        # S3 invokes the metrics function asynchronously: retry, then park the event.
        live["metrics"].configure_async_invoke(
            retry_attempts=s.metrics_retry_attempts,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(failed_dlq),
        )
        event_log.bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(live["metrics"]),
            s3.NotificationKeyFilter(prefix=EVENTS_PREFIX),
        )
        self._expire_notification_handler_logs(s)
        events.Rule(
            self,
            "EndpointStateChange",
            rule_name=f"abtest-register-{s.stage_name}",
            description="Registers A/B testing endpoints when they change state.",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[ENDPOINT_STATE_CHANGE],
                detail={"EndpointName": [{"prefix": prefix}]},
            ),
            targets=[
                targets.LambdaFunction(
                    live["register"],
                    dead_letter_queue=failed_dlq,
                    retry_attempts=4,
                    max_event_age=Duration.hours(2),
                )
            ],
        )

        api = ServiceApi(
            self, "Api", s, {r.function_name: live[r.function_name] for r in ALL_ROUTES}
        )

        alarms = Alarms(self, "Alarms", s.stage_name, s.alarm_email)
        alarms.queue_depth("UndeliveredEventsAlarm", events_dlq, "Events Firehose refused")
        alarms.queue_depth("FailedAggregationsAlarm", failed_dlq, "Failed event objects")
        alarms.add("Api5xxAlarm", api.server_errors, "The API answered with a 5xx.")
        alarms.add(
            "MostlyRejectedAlarm",
            object_count(Count.MOSTLY_REJECTED_OBJECTS),
            f"The metrics function rejected most lines of an event object (is something "
            f"writing another format to the stream?): see {REJECTED_PREFIX} in the bucket.",
        )
        for name, fn in fns.items():
            alarms.function_errors(fn, name)
        lifecycle_logs = [
            fns[r.function_name].log_group.log_group_name
            for r in ALL_ROUTES
            if Need.LIFECYCLE in r.needs
        ] + [
            fns["metrics"].log_group.log_group_name,  # auto-conclusions
            fns["register"].log_group.log_group_name,  # promotions it finishes
        ]
        service_dashboard(
            self, s.stage_name, fns, api.server_errors, [events_dlq, failed_dlq], lifecycle_logs
        )

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

    def _expire_notification_handler_logs(self, s: Settings) -> None:
        """CDK's bucket-notification handler logs to a group it never creates, kept forever.

        Point it at a group of ours that expires like the functions' logs.
        """
        log_group = logs.LogGroup(
            self,
            "BucketNotificationsLogs",
            retention=RETENTION[s.log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        handler = self.node.find_child(NOTIFICATIONS_HANDLER).node.default_child
        handler.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})
        handler.node.add_dependency(log_group)

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
        grant = "CDK's Firehose S3 destination grant"
        granted = "this one bucket's objects, for Firehose's delivery"
        nag.suppress_each(
            event_log.stream,
            "IAM5",
            {
                **{
                    f"Action::s3:{a}*": f"{grant}, s3:{a}*, on {granted}."
                    for a in ("GetObject", "GetBucket", "List", "DeleteObject", "Abort")
                },
                f"Resource::<{bucket}.Arn>/*": "Firehose writes under any key of this one "
                "bucket (CDK's destination grant): s3:GetObject*, s3:GetBucket*, s3:List*, "
                "s3:DeleteObject*, s3:PutObject, s3:PutObjectLegalHold, s3:PutObjectRetention, "
                "s3:PutObjectTagging, s3:PutObjectVersionTagging, s3:Abort*.",
            },
        )
        endpoints = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        prefix = stage_prefix(s)
        for name in (r.name for r in ROUTES if Need.MODELS in r.needs):
            nag.suppress_each(
                fns[name].role,
                "IAM5",
                {
                    f"Resource::{endpoints}:endpoint/{prefix}*": "Only this stage's endpoints, "
                    "the allow-list of what the API may call: sagemaker:InvokeEndpoint."
                },
            )
        for route in (r for r in ALL_ROUTES if Need.PROMOTION in r.needs):
            nag.suppress_each(
                fns[route.function_name].role,
                "IAM5",
                {
                    f"Resource::{endpoints}:endpoint/{prefix}*": "Only this stage's endpoints, "
                    f"the ones the API serves and may conclude: {', '.join(PROMOTION_ACTIONS)}."
                },
            )
        for name in (r.function_name for r in ALL_ROUTES if Need.CATALOG in r.needs):
            nag.suppress_each(
                fns[name].role,
                "IAM5",
                {
                    f"Resource::{endpoints}:endpoint/{prefix}*": "Only this stage's endpoints, "
                    "whose production variants may be added: sagemaker:DescribeEndpoint."
                },
            )
        register_reads = (
            "sagemaker:DescribeEndpoint, sagemaker:DescribeEndpointConfig, sagemaker:ListTags."
        )
        nag.suppress_each(
            fns["register"].role,
            "IAM5",
            {
                f"Resource::{endpoints}:endpoint/{prefix}*": "Only this stage's endpoints, the "
                f"ones the register function may register: {register_reads} And promote a "
                f"concluded winner in: {SET_WEIGHTS}.",
                f"Resource::{endpoints}:endpoint-config/{prefix}*": "Only this stage's endpoint "
                f"configs: {register_reads}",
            },
        )
        nag.suppress_each(
            fns["metrics"].role,
            "IAM5",
            {
                f"Resource::<{bucket}.Arn>/{EVENTS_PREFIX}*": "The metrics function reads "
                "Firehose's event objects, under their own prefix: s3:GetObject.",
                f"Resource::<{bucket}.Arn>/{REJECTED_PREFIX}*": "The metrics function writes "
                "the lines it rejects, under their own prefix: s3:PutObject, "
                "s3:AbortMultipartUpload.",
                f"Resource::{endpoints}:endpoint/{prefix}*": "Only this stage's endpoints, "
                "the ones it may auto-conclude and promote a winner in: "
                f"{', '.join(PROMOTION_ACTIONS)}.",
            },
        )
        for fn in fns.values():
            nag.suppress(
                fn,
                "L1",
                f"{s.python_runtime} is the runtime the service is tested on and the Powertools "
                "layer is published for; a newer one is adopted deliberately, with the tests.",
            )
        nag.suppress(
            self.node.find_child(NOTIFICATIONS_HANDLER),
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
