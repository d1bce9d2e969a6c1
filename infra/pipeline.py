"""The champion/challenger deployment pipeline for one project and stage.

A model package approved in `<project>-champion` or `<project>-challenger`
starts a CodeBuild build that queries the registry, synthesizes the
deployment stack (`cdk synth ... -c select_models=true`) and deploys that one
template through CloudFormation, as the original template's CodeBuild step did.

The build holds no deploy rights of its own beyond that one stack: it runs
pinned code (the uploaded source, dependencies checked against hashes) and
hands CloudFormation a role that may create only what the deployment stack
holds (models, an endpoint config, the project's endpoint, the model role, a
dashboard). It never assumes the CDK bootstrap roles, whose CloudFormation
role is an administrator. The project name may be a CloudFormation parameter
(the Service Catalog product) or a plain string (the pipeline stack).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import nag
from infra.functions import RETENTION
from infra.names import deployment_stack_name, model_role_path, stage_prefix
from infra.settings import Settings

MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
# Checked by pip with --require-hashes: the build installs exactly these files.
BUILD_REQUIREMENTS = "infra/build-requirements.txt"

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


def build_spec() -> codebuild.BuildSpec:
    """Install pinned tools, synthesize the stage, deploy the one template with DEPLOY_ROLE_ARN."""
    template = 'cdk.out/"$DEPLOY_STACK".template.json'
    return codebuild.BuildSpec.from_object(
        {
            "version": "0.2",
            "phases": {
                "install": {
                    "runtime-versions": {"python": "3.12", "nodejs": "22"},
                    "commands": [
                        "python -m venv .venv",
                        ".venv/bin/pip install --quiet --no-deps --require-hashes"
                        f" -r {BUILD_REQUIREMENTS}",
                        # package-lock.json carries each package's integrity hash.
                        "npm ci --no-audit --no-fund --ignore-scripts --loglevel=error",
                    ],
                },
                "build": {
                    "commands": [
                        'export PATH="$PWD/.venv/bin:$PATH"',
                        'npx cdk synth "$DEPLOY_STACK" --quiet --no-notices'
                        ' -c "stage_name=$STAGE_NAME" -c "project_name=$PROJECT_NAME"'
                        " -c select_models=true",
                        'aws cloudformation deploy --stack-name "$DEPLOY_STACK"'
                        f" --template-file {template}"
                        ' --role-arn "$DEPLOY_ROLE_ARN" --capabilities CAPABILITY_IAM'
                        " --no-fail-on-empty-changeset",
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
        settings: Settings,
        project_name: str,
        source_bucket: s3.IBucket,
        source_key: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stage_name = settings.stage_name
        groups = [f"{project_name}-champion", f"{project_name}-challenger"]
        deploy_stack = deployment_stack_name(project_name, stage_name)
        self.deploy_role = self._deploy_role(settings, project_name, groups)
        # The stack id after the name changes with every re-creation.
        self._deploy_stack_arn = Stack.of(self).format_arn(
            service="cloudformation", resource="stack", resource_name=f"{deploy_stack}/*"
        )

        self.project = codebuild.Project(
            self,
            "Build",
            project_name=f"abtest-deploy-{project_name}-{stage_name}",
            description="Redeploys the A/B testing endpoint from the model registry.",
            source=codebuild.Source.s3(bucket=source_bucket, path=source_key),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.SMALL,
            ),
            environment_variables={
                "PROJECT_NAME": codebuild.BuildEnvironmentVariable(value=project_name),
                "STAGE_NAME": codebuild.BuildEnvironmentVariable(value=stage_name),
                "DEPLOY_STACK": codebuild.BuildEnvironmentVariable(value=deploy_stack),
                "DEPLOY_ROLE_ARN": codebuild.BuildEnvironmentVariable(
                    value=self.deploy_role.role_arn
                ),
            },
            build_spec=build_spec(),
            encryption_key=kms.Alias.from_alias_name(self, "S3Key", "alias/aws/s3"),
            timeout=Duration.minutes(60),
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(
                    log_group=logs.LogGroup(
                        self,
                        "BuildLogs",
                        retention=RETENTION[settings.log_retention_days],
                        removal_policy=RemovalPolicy.DESTROY,
                    )
                )
            ),
        )
        role = self.project.role
        assert role is not None  # codebuild.Project always creates one
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "cloudformation:DescribeStacks",
                    "cloudformation:CreateChangeSet",
                    "cloudformation:DescribeChangeSet",
                    "cloudformation:ExecuteChangeSet",
                ],
                resources=[self._deploy_stack_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.deploy_role.role_arn],
                conditions={
                    "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}
                },
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
        self._suppress()

    def _deploy_role(self, settings: Settings, project_name: str, groups: list[str]) -> iam.Role:
        """CloudFormation's role for the deployment stack: exactly the resources it holds."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "DeployRole",
            assumed_by=iam.ServicePrincipal("cloudformation.amazonaws.com"),
            description="Deploys one A/B testing endpoint stack, and nothing else.",
        )
        endpoint = f"{stage_prefix(settings)}{project_name}"

        def sagemaker(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        # The model role's path names its project and stage: see DeploymentStack.
        model_roles = stack.format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name=f"{model_role_path(project_name, settings.stage_name).strip('/')}/*",
        )
        self._model_roles = model_roles
        self._model_packages = [sagemaker("model-package", f"{group}/*") for group in groups]
        grants = [
            (
                ["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel"],
                [sagemaker("model", "*")],
            ),
            (
                [
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:DeleteEndpointConfig",
                ],
                [sagemaker("endpoint-config", "*")],
            ),
            (
                [
                    "sagemaker:CreateEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DeleteEndpoint",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:AddTags",
                    "sagemaker:DeleteTags",
                    "sagemaker:ListTags",
                ],
                [sagemaker("endpoint", endpoint)],
            ),
            (
                ["sagemaker:DescribeModelPackage"],
                self._model_packages,
            ),
            (
                [
                    "iam:CreateRole",
                    "iam:DeleteRole",
                    "iam:GetRole",
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:GetRolePolicy",
                ],
                [model_roles],
            ),
            (
                [
                    "cloudwatch:PutDashboard",
                    "cloudwatch:GetDashboard",
                    "cloudwatch:DeleteDashboards",
                ],
                [
                    stack.format_arn(
                        service="cloudwatch",
                        region="",
                        resource="dashboard",
                        resource_name=endpoint,
                    )
                ],
            ),
        ]
        for actions, resources in grants:
            role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[model_roles],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        return role

    def _suppress(self) -> None:
        nag.suppress(
            self.dead_letter_queue,
            "SQS3",
            "This queue is itself the dead-letter queue of the approval rule.",
        )
        stack = Stack.of(self)
        project = stack.resolve(self.project.node.default_child.logical_id)
        here = "<AWS::Region>:<AWS::AccountId>"
        nag.suppress_each(
            self.project,
            "IAM5",
            {
                "Action::s3:GetObject*": "CodeBuild's source grant, s3:GetObject*, on the one "
                "source object only.",
                "Action::s3:GetBucket*": "CodeBuild's source grant, s3:GetBucket*: the source "
                "bucket's location and versioning.",
                "Action::s3:List*": "CodeBuild's source grant, s3:List*, on the source bucket.",
                "Resource::*": "sagemaker:ListModelPackages has no resource-level form.",
                f"Resource::arn:<AWS::Partition>:logs:{here}:log-group:/aws/codebuild/"
                f"<{project}>:*": "CodeBuild's default grant on its default log group's streams "
                "(logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents); the build "
                "writes to its own expiring group instead.",
                f"Resource::arn:<AWS::Partition>:codebuild:{here}:report-group/<{project}>-*": (
                    "CodeBuild's default grant on report groups named after this project: "
                    "codebuild:CreateReportGroup, codebuild:CreateReport, codebuild:UpdateReport, "
                    "codebuild:BatchPutTestCases, codebuild:BatchPutCodeCoverages."
                ),
                f"Resource::{nag.arn_finding(self, self._deploy_stack_arn)}": "The deployment "
                "stack's id follows its name: cloudformation:DescribeStacks, "
                "cloudformation:CreateChangeSet, cloudformation:DescribeChangeSet, "
                "cloudformation:ExecuteChangeSet.",
            },
        )
        sagemaker = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        nag.suppress_each(
            self.deploy_role,
            "IAM5",
            {
                f"Resource::{sagemaker}:model/*": "CloudFormation names the stack's models "
                "itself: sagemaker:CreateModel, sagemaker:DescribeModel, sagemaker:DeleteModel.",
                f"Resource::{sagemaker}:endpoint-config/*": "CloudFormation names the stack's "
                "endpoint configs itself: sagemaker:CreateEndpointConfig, "
                "sagemaker:DescribeEndpointConfig, sagemaker:DeleteEndpointConfig.",
                **{
                    f"Resource::{nag.arn_finding(self, group)}": "Any version of the project's "
                    "registry group may be deployed: sagemaker:DescribeModelPackage."
                    for group in self._model_packages
                },
                f"Resource::{nag.arn_finding(self, self._model_roles)}": "The model role "
                "CloudFormation names itself, under the project's and stage's IAM path: "
                "iam:CreateRole, iam:DeleteRole, iam:GetRole, iam:PutRolePolicy, "
                "iam:DeleteRolePolicy, iam:GetRolePolicy, iam:PassRole.",
            },
        )
