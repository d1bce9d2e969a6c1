"""The service's Lambda functions: one code asset, one Powertools layer, one role each.

Each function gets its own role with only a log-stream grant on its own log
group; callers add the data-plane permissions it needs, so a template test
can read a function's whole permission set from one policy.

Every function runs with SnapStart: each deploy publishes a version, Lambda snapshots it
once initialized (the handlers' hooks make their AWS clients first, `lambdas/wiring.py`),
and new environments resume from that snapshot. Only published versions have one, so
every caller (API Gateway, the S3 notification, EventBridge) invokes the `live` alias,
which each deploy moves to the new version.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent

# The asset holds only the service packages; everything else in the repo stays out.
CODE_EXCLUDE = [
    "*",
    "!abtest",
    "!abtest/**",
    "!bandit",
    "!bandit/**",
    "!lambdas",
    "!lambdas/**",
    "**/__pycache__",
    "**/*.pyc",
]

POWERTOOLS_ACCOUNT = "017000801446"
# Every API route's function runs this handler; its ROUTE variable names the route.
API_HANDLER = "lambdas.api.lambda_handler"
# The alias every caller invokes: the version published (and snapshotted) by the last deploy.
LIVE_ALIAS = "live"
# Every function's POWERTOOLS_SERVICE_NAME: the `service` dimension of its metrics.
SERVICE_NAME = "abtest"

RETENTION = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def powertools_layer_arn(region: str, settings: Settings) -> str:
    """The AWS-published Powertools V3 layer.

    It is built with the `[all]` extra, so it ships pydantic v2 as well.
    """
    return (
        f"arn:aws:lambda:{region}:{POWERTOOLS_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{settings.runtime_tag}-arm64:"
        f"{settings.powertools_layer_version}"
    )


class ServiceFunctions(Construct):
    """Factory for the handlers; all share the code asset and the layer."""

    def __init__(self, scope: Construct, construct_id: str, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.code = lambda_.Code.from_asset(str(REPO_ROOT), exclude=CODE_EXCLUDE)
        self.layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", powertools_layer_arn(Stack.of(self).region, settings)
        )

    def function(
        self,
        name: str,
        *,
        memory_mb: int,
        timeout_seconds: int,
        environment: dict[str, str],
        handler: str | None = None,
    ) -> lambda_.Function:
        """`name` is the function's short name; its handler is `lambdas.<name>` unless given."""
        s = self.settings
        log_group = logs.LogGroup(
            self,
            f"{name}-logs",
            log_group_name=f"/aws/lambda/abtest-{name}-{s.stage_name}",
            retention=RETENTION[s.log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{name}-role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"abtest {name} function ({s.stage_name})",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        return lambda_.Function(
            self,
            name,
            function_name=f"abtest-{name}-{s.stage_name}",
            # Both runtimes the settings allow (python3.12, python3.13) have SnapStart.
            runtime=lambda_.Runtime(
                s.python_runtime, lambda_.RuntimeFamily.PYTHON, supports_snap_start=True
            ),
            architecture=lambda_.Architecture.ARM_64,
            handler=handler or f"lambdas.{name}.lambda_handler",
            code=self.code,
            layers=[self.layer],
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_seconds),
            role=role,
            log_group=log_group,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS,
            # A version's snapshot is billed while the version exists: a deploy deletes the
            # version it replaces (CDK keeps them by default).
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
            environment={
                "STAGE_NAME": s.stage_name,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": "abtest",
                "POWERTOOLS_LOG_LEVEL": s.log_level,
                # The service uses no pydantic plugin: skip the scan of every installed
                # package's metadata for one at the first model.
                "PYDANTIC_DISABLE_PLUGINS": "__all__",
                **environment,
            },
        )

    def live(self, fn: lambda_.Function) -> lambda_.Alias:
        """The alias callers invoke: the version this deploy publishes, with its snapshot."""
        return lambda_.Alias(
            self, f"{fn.node.id}-{LIVE_ALIAS}", alias_name=LIVE_ALIAS, version=fn.current_version
        )
