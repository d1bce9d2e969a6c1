"""Where the service keeps state: the two DynamoDB tables and the Firehose event log."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from abtest.events import EVENTS_PREFIX
from infra.functions import RETENTION
from infra.settings import Settings

# Firehose writes events under EVENTS_PREFIX; only that prefix notifies the metrics
# function, so its own REJECTED_PREFIX output and Firehose's error output never loop back.
ERROR_PREFIX = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"


def _removal(settings: Settings) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if settings.retain_data else RemovalPolicy.DESTROY


class Tables(Construct):
    """Assignment and metrics tables, in the schema the DynamoDB adapter is written to."""

    def __init__(self, scope: Construct, construct_id: str, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        common = {
            "billing_mode": dynamodb.BillingMode.PAY_PER_REQUEST,
            "encryption": dynamodb.TableEncryption.AWS_MANAGED,
            "point_in_time_recovery_specification": dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            "time_to_live_attribute": "ttl",
            "removal_policy": _removal(settings),
            # A retained stage's tables also refuse DeleteTable, from the console or any API.
            "deletion_protection": settings.retain_data,
        }
        self.assignment = dynamodb.Table(
            self,
            "Assignment",
            table_name=f"abtest-assignment-{settings.stage_name}",
            partition_key=dynamodb.Attribute(name="user_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="endpoint_name", type=dynamodb.AttributeType.STRING),
            **common,
        )
        self.metrics = dynamodb.Table(
            self,
            "Metrics",
            table_name=f"abtest-metrics-{settings.stage_name}",
            partition_key=dynamodb.Attribute(
                name="endpoint_name", type=dynamodb.AttributeType.STRING
            ),
            **common,
        )


class EventLog(Construct):
    """Firehose -> S3 JSON lines, GZIP, expired by a lifecycle rule."""

    def __init__(self, scope: Construct, construct_id: str, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-events",
                    expiration=Duration.days(settings.event_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=_removal(settings),
        )
        self.stream = firehose.DeliveryStream(
            self,
            "Stream",
            delivery_stream_name=f"abtest-events-{settings.stage_name}",
            encryption=firehose.StreamEncryption.aws_owned_key(),
            destination=firehose.S3Bucket(
                self.bucket,
                buffering_interval=Duration.seconds(settings.firehose_buffer_interval_seconds),
                buffering_size=Size.mebibytes(settings.firehose_buffer_size_mb),
                compression=firehose.Compression.GZIP,
                data_output_prefix=EVENTS_PREFIX + "!{timestamp:yyyy/MM/dd/HH}/",
                error_output_prefix=ERROR_PREFIX,
                # Delivery errors expire like every other log (Firehose's own default: 2 years).
                logging_config=firehose.EnableLogging(
                    logs.LogGroup(
                        self,
                        "DeliveryLogs",
                        retention=RETENTION[settings.log_retention_days],
                        removal_policy=RemovalPolicy.DESTROY,
                    )
                ),
            ),
        )
