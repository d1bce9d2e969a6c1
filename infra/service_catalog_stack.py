"""The SageMaker project template: a Service Catalog portfolio with one product.

Creating a project from it in SageMaker Studio provisions the deployment
pipeline for that project. As in the original, the build's source is uploaded
by this stack and handed to the project as two parameters (the stack's
`SourceBucket` and `SourceKey` outputs).
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
    """The template a SageMaker project provisions; SageMaker fills in the first two parameters."""

    def __init__(self, scope: Construct, construct_id: str, default_stage: str) -> None:
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
        stage_name = CfnParameter(
            self,
            "StageName",
            type="String",
            default=default_stage,
            description="Stage suffix of the endpoint and its config file",
        )
        source_bucket = CfnParameter(
            self,
            "SourceBucket",
            type="String",
            description="SourceBucket output of the catalog stack",
        )
        source_key = CfnParameter(
            self, "SourceKey", type="String", description="SourceKey output of the catalog stack"
        )
        DeploymentPipeline(
            self,
            "Pipeline",
            project_name=project_name.value_as_string,
            stage_name=stage_name.value_as_string,
            source_bucket=s3.Bucket.from_bucket_name(self, "Source", source_bucket.value_as_string),
            source_key=source_key.value_as_string,
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
                        PipelineProduct(self, "PipelineProduct", settings.stage_name)
                    ),
                )
            ],
        )
        # SageMaker Studio lists only products carrying this tag.
        Tags.of(product).add("sagemaker:studio-visibility", "true")
        portfolio.add_product(product)
        portfolio.set_launch_role(product, self._launch_role())

        CfnOutput(self, "SourceBucket", value=source.s3_bucket_name)
        CfnOutput(self, "SourceKey", value=source.s3_object_key)
        CfnOutput(self, "PortfolioId", value=portfolio.portfolio_id)
        CfnOutput(self, "ProductId", value=product.product_id)

    def _launch_role(self) -> iam.Role:
        """What Service Catalog may do when a project is created: build the pipeline only."""
        role = iam.Role(
            self,
            "LaunchRole",
            assumed_by=iam.ServicePrincipal("servicecatalog.amazonaws.com"),
            description="Provisions the abtest deployment pipeline product.",
        )
        arn = f"arn:{self.partition}"
        here = f"{self.region}:{self.account}"
        statements = {
            "cloudformation": (
                [
                    "cloudformation:CreateStack",
                    "cloudformation:UpdateStack",
                    "cloudformation:DeleteStack",
                    "cloudformation:DescribeStacks",
                    "cloudformation:DescribeStackEvents",
                    "cloudformation:GetTemplateSummary",
                    "cloudformation:ValidateTemplate",
                    "cloudformation:SetStackPolicy",
                ],
                [f"{arn}:cloudformation:{here}:stack/SC-*", "*"],
            ),
            "template": (["s3:GetObject"], ["*"]),
            "codebuild": (
                [
                    "codebuild:CreateProject",
                    "codebuild:UpdateProject",
                    "codebuild:DeleteProject",
                    "codebuild:BatchGetProjects",
                ],
                [f"{arn}:codebuild:{here}:project/abtest-deploy-*"],
            ),
            "events": (
                [
                    "events:PutRule",
                    "events:DeleteRule",
                    "events:DescribeRule",
                    "events:PutTargets",
                    "events:RemoveTargets",
                ],
                [f"{arn}:events:{here}:rule/SC-*"],
            ),
            "sqs": (
                [
                    "sqs:CreateQueue",
                    "sqs:DeleteQueue",
                    "sqs:GetQueueAttributes",
                    "sqs:SetQueueAttributes",
                    "sqs:TagQueue",
                ],
                [f"{arn}:sqs:{here}:SC-*"],
            ),
            "iam": (
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
            ),
        }
        for actions, resources in statements.values():
            role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
        nag.suppress(
            role,
            "IAM5",
            "Service Catalog names what it provisions `SC-<account>-pp-<id>-...` and the "
            "pipeline's build `abtest-deploy-<project>-<stage>`: the wildcards are those "
            "names; Service Catalog reads the template from its own bucket, and "
            "ValidateTemplate/GetTemplateSummary have no resource-level form.",
            "Resource::*",
            "Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:stack/SC-*",
            "Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:project/abtest-deploy-*",
            "Resource::arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/SC-*",
            "Resource::arn:<AWS::Partition>:sqs:<AWS::Region>:<AWS::AccountId>:SC-*",
            "Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/SC-*",
        )
        return role
