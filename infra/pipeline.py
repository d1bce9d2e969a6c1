"""The champion/challenger deployment pipeline for one project and stage.

A model package approved in `<project>-champion` or `<project>-challenger`
starts a CodeBuild build that queries the registry and redeploys the
deployment stack (`cdk deploy ... -c select_models=true`), as the original
template's CodeBuild step did. Project and stage may be CloudFormation
parameters (the Service Catalog product) or plain strings (the pipeline stack).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import nag

MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
# The CDK bootstrap's default qualifier: the build deploys through the bootstrap roles.
CDK_QUALIFIER = "hnb659fds"

# The repository's own files (see pyproject.toml): what the build needs to synth and deploy.
SOURCE_EXCLUDE = [
    "*",
    *(
        f"!{p}"
        for p in (
            "app.py",
            "cdk.json",
            "pyproject.toml",
            "README.md",
            "package.json",
            "package-lock.json",
        )
    ),
    *(f"!{d}{s}" for d in ("abtest", "bandit", "lambdas", "infra") for s in ("", "/**")),
    "**/__pycache__",
    "**/*.pyc",
]


def build_spec(deploy_stack: str) -> codebuild.BuildSpec:
    return codebuild.BuildSpec.from_object(
        {
            "version": "0.2",
            "phases": {
                "install": {
                    "runtime-versions": {"python": "3.12", "nodejs": "20"},
                    "commands": [
                        "python -m venv .venv",
                        ".venv/bin/pip install --quiet -e '.[aws,cdk]'",
                        "npm ci --no-audit --no-fund --loglevel=error",
                    ],
                },
                "build": {
                    "commands": [
                        'export PATH="$PWD/.venv/bin:$PATH"',
                        "npx cdk deploy " + deploy_stack + " --require-approval never"
                        " -c stage_name=$STAGE_NAME -c project_name=$PROJECT_NAME"
                        " -c select_models=true --no-notices",
                    ]
                },
            },
        }
    )


class DeploymentPipeline(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project_name: str,
        stage_name: str,
        source_bucket: s3.IBucket,
        source_key: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        name = f"abtest-deploy-{project_name}-{stage_name}"
        groups = [f"{project_name}-champion", f"{project_name}-challenger"]

        self.project = codebuild.Project(
            self,
            "Build",
            project_name=name,
            description="Redeploys the A/B testing endpoint from the model registry.",
            source=codebuild.Source.s3(bucket=source_bucket, path=source_key),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.SMALL,
            ),
            environment_variables={
                "PROJECT_NAME": codebuild.BuildEnvironmentVariable(value=project_name),
                "STAGE_NAME": codebuild.BuildEnvironmentVariable(value=stage_name),
            },
            build_spec=build_spec(f"abtest-deployment-{project_name}-{stage_name}"),
            encryption_key=kms.Alias.from_alias_name(self, "S3Key", "alias/aws/s3"),
            timeout=Duration.minutes(60),
        )
        role = self.project.role
        assert role is not None  # codebuild.Project always creates one
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[
                    f"arn:{stack.partition}:iam::{stack.account}:role/"
                    f"cdk-{CDK_QUALIFIER}-*-{stack.account}-{stack.region}"
                ],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=["*"])
        )

        self.dead_letter_queue = sqs.Queue(
            self,
            "FailedTriggers",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.rule = events.Rule(
            self,
            "ModelApproved",
            description="A model package was approved in the project's registry groups.",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[MODEL_PACKAGE_STATE_CHANGE],
                detail={"ModelPackageGroupName": groups, "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[
                targets.CodeBuildProject(
                    self.project, dead_letter_queue=self.dead_letter_queue, retry_attempts=2
                )
            ],
        )
        self._suppress(stack)

    def _suppress(self, stack: Stack) -> None:
        nag.suppress(
            self.dead_letter_queue,
            "SQS3",
            "This queue is itself the dead-letter queue of the approval rule.",
        )
        nag.suppress(
            self.project,
            "IAM5",
            "CodeBuild's own grants: read of the source object, logs and reports under this "
            "project's names; the CDK bootstrap roles differ only by purpose; "
            "ListModelPackages has no resource-level form.",
            *self._iam5_findings(),
        )

    def _iam5_findings(self) -> list[str]:
        """The wildcard resources of the build role, as cdk-nag prints them."""
        stack = Stack.of(self)
        project = stack.resolve(self.project.node.default_child.logical_id)
        logs = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/codebuild/"
        reports = "arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:report-group/"
        return [
            *(f"Action::s3:{a}*" for a in ("GetObject", "GetBucket", "List")),
            "Resource::*",
            f"Resource::{logs}<{project}>:*",
            f"Resource::{reports}<{project}>-*",
            "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/"
            f"cdk-{CDK_QUALIFIER}-*-<AWS::AccountId>-<AWS::Region>",
        ]
