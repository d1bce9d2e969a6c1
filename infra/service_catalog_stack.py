"""The SageMaker project template: a Service Catalog portfolio with one product.

Creating a project from it in SageMaker Studio provisions the deployment
pipeline for that project, in this stack's stage. Whoever may launch the
product chooses only the project (SageMaker fills in its name and id): the
build's source is the copy of this repository this stack publishes, pinned
in the product's template, so a launcher cannot make the build run other code.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, CfnParameter, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_servicecatalog as servicecatalog
from constructs import Construct

from infra import nag
from infra.functions import REPO_ROOT
from infra.pipeline import SOURCE_EXCLUDE, DeploymentPipeline
from infra.settings import Settings

PRODUCT_NAME = "abtest-deployment-pipeline"


class PipelineProduct(servicecatalog.ProductStack):
    """The template a SageMaker project provisions; SageMaker fills in both parameters."""

    def __init__(
        self, scope: Construct, construct_id: str, settings: Settings, source: s3_assets.Asset
    ) -> None:
        super().__init__(scope, construct_id)
        project_name = CfnParameter(
            self, "SageMakerProjectName", type="String", description="SageMaker project name"
        )
        project_id = CfnParameter(
            self, "SageMakerProjectId", type="String", description="SageMaker project id"
        )
        # Studio lists a project's resources by these tags.
        Tags.of(self).add("sagemaker:project-name", project_name.value_as_string)
        Tags.of(self).add("sagemaker:project-id", project_id.value_as_string)
        DeploymentPipeline(
            self,
            "Pipeline",
            settings=settings,
            project_name=project_name.value_as_string,
            # The published asset's bucket and key, written into the product's template.
            source_bucket=s3.Bucket.from_bucket_name(self, "Source", source.s3_bucket_name),
            source_key=source.s3_object_key,
        )


class ServiceCatalogStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, settings: Settings, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        execution_role_arn = CfnParameter(
            self,
            "ExecutionRoleArn",
            type="String",
            description="The SageMaker Studio execution role that may launch the template",
        )
        source = s3_assets.Asset(self, "Source", path=str(REPO_ROOT), exclude=SOURCE_EXCLUDE)

        portfolio = servicecatalog.Portfolio(
            self,
            "Portfolio",
            display_name=f"abtest A/B testing ({settings.stage_name})",
            provider_name="abtest",
            description="SageMaker project templates for multi-armed-bandit A/B testing.",
        )
        portfolio.give_access_to_role(
            iam.Role.from_role_arn(self, "StudioRole", execution_role_arn.value_as_string)
        )
        product = servicecatalog.CloudFormationProduct(
            self,
            "Product",
            product_name=PRODUCT_NAME,
            owner="abtest",
            description="Champion/challenger deployment pipeline with a multi-variant endpoint.",
            product_versions=[
                servicecatalog.CloudFormationProductVersion(
                    product_version_name="v1",
                    cloud_formation_template=servicecatalog.CloudFormationTemplate.from_product_stack(
                        PipelineProduct(self, "PipelineProduct", settings, source)
                    ),
                )
            ],
        )
        # SageMaker Studio lists only products carrying this tag.
        Tags.of(product).add("sagemaker:studio-visibility", "true")
        portfolio.add_product(product)
        portfolio.set_launch_role(product, self._launch_role(settings.stage_name))

        CfnOutput(self, "PortfolioId", value=portfolio.portfolio_id)
        CfnOutput(self, "ProductId", value=product.product_id)

    def _launch_role(self, stage_name: str) -> iam.Role:
        """What Service Catalog may do when a project is created: build the pipeline only.

        Service Catalog names each provisioned stack `SC-<account>-pp-<id>`, and
        CloudFormation names what it creates after the stack, so `SC-*` are the
        product's own resources; each grant below is scoped to those names.
        """
        role = iam.Role(
            self,
            "LaunchRole",
            assumed_by=iam.ServicePrincipal("servicecatalog.amazonaws.com"),
            description="Provisions the abtest deployment pipeline product.",
        )
        arn = f"arn:{self.partition}"
        here = f"{self.region}:{self.account}"
        stacks = f"{arn}:cloudformation:{here}:stack/SC-{self.account}-pp-*/*"
        builds = f"{arn}:codebuild:{here}:project/abtest-deploy-*-{stage_name}"
        grants = [
            (
                [
                    "cloudformation:CreateStack",
                    "cloudformation:UpdateStack",
                    "cloudformation:DeleteStack",
                    "cloudformation:DescribeStacks",
                    "cloudformation:DescribeStackEvents",
                    "cloudformation:SetStackPolicy",
                ],
                [stacks],
                None,
            ),
            (["cloudformation:GetTemplateSummary", "cloudformation:ValidateTemplate"], ["*"], None),
            # Service Catalog's own copy of the product template carries this tag.
            (
                ["s3:GetObject"],
                ["*"],
                {"StringEquals": {"s3:ExistingObjectTag/servicecatalog:provisioning": "true"}},
            ),
            (
                [
                    "codebuild:CreateProject",
                    "codebuild:UpdateProject",
                    "codebuild:DeleteProject",
                    "codebuild:BatchGetProjects",
                ],
                [builds],
                None,
            ),
            (
                [
                    "events:PutRule",
                    "events:DeleteRule",
                    "events:DescribeRule",
                    "events:PutTargets",
                    "events:RemoveTargets",
                ],
                [f"{arn}:events:{here}:rule/SC-*"],
                None,
            ),
            (
                [
                    "sqs:CreateQueue",
                    "sqs:DeleteQueue",
                    "sqs:GetQueueAttributes",
                    "sqs:SetQueueAttributes",
                    "sqs:TagQueue",
                ],
                [f"{arn}:sqs:{here}:SC-*"],
                None,
            ),
            (
                [
                    "logs:CreateLogGroup",
                    "logs:DeleteLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:TagResource",
                    "logs:DescribeLogGroups",
                ],
                [f"{arn}:logs:{here}:log-group:SC-*"],
                None,
            ),
            (
                [
                    "iam:CreateRole",
                    "iam:DeleteRole",
                    "iam:GetRole",
                    "iam:PassRole",
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:GetRolePolicy",
                    "iam:TagRole",
                ],
                [f"{arn}:iam::{self.account}:role/SC-*"],
                None,
            ),
        ]
        for actions, resources, conditions in grants:
            role.add_to_policy(
                iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions)
            )
        account = "<AWS::AccountId>"
        prefix = f"arn:<AWS::Partition>:{{}}:<AWS::Region>:{account}"
        nag.suppress_each(
            role,
            "IAM5",
            {
                "Resource::*": "cloudformation:GetTemplateSummary and "
                "cloudformation:ValidateTemplate have no resource-level form; s3:GetObject "
                "only on the objects Service Catalog tags for provisioning, its copies of "
                "product templates.",
                f"Resource::{prefix.format('cloudformation')}:stack/SC-{account}-pp-*/*": (
                    "Only the stacks Service Catalog provisions, SC-<account>-pp-<id>: "
                    "cloudformation:CreateStack, cloudformation:UpdateStack, "
                    "cloudformation:DeleteStack, cloudformation:DescribeStacks, "
                    "cloudformation:DescribeStackEvents, cloudformation:SetStackPolicy."
                ),
                f"Resource::{prefix.format('codebuild')}:project/abtest-deploy-*-{stage_name}": (
                    "The pipeline's build, abtest-deploy-<project>-<stage>, for any project: "
                    "codebuild:CreateProject, codebuild:UpdateProject, codebuild:DeleteProject, "
                    "codebuild:BatchGetProjects."
                ),
                f"Resource::{prefix.format('events')}:rule/SC-*": "The approval rule "
                "CloudFormation names after the provisioned stack: events:PutRule, "
                "events:DeleteRule, events:DescribeRule, events:PutTargets, events:RemoveTargets.",
                f"Resource::{prefix.format('sqs')}:SC-*": "The approval rule's dead-letter "
                "queue, named after the provisioned stack: sqs:CreateQueue, sqs:DeleteQueue, "
                "sqs:GetQueueAttributes, sqs:SetQueueAttributes, sqs:TagQueue.",
                f"Resource::{prefix.format('logs')}:log-group:SC-*": "The build's log group, "
                "named after the provisioned stack: logs:CreateLogGroup, logs:DeleteLogGroup, "
                "logs:PutRetentionPolicy, logs:TagResource, logs:DescribeLogGroups.",
                f"Resource::arn:<AWS::Partition>:iam::{account}:role/SC-*": "The build's, the "
                "rule's and the deploy roles, named after the provisioned stack: "
                "iam:CreateRole, iam:DeleteRole, iam:GetRole, iam:PassRole, iam:PutRolePolicy, "
                "iam:DeleteRolePolicy, iam:GetRolePolicy, iam:TagRole.",
            },
        )
        return role
