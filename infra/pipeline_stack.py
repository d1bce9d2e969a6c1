"""The deployment pipeline deployed straight with CDK, without Service Catalog.

The build's source is this repository, uploaded as a CDK asset.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.functions import REPO_ROOT
from infra.pipeline import SOURCE_EXCLUDE, DeploymentPipeline
from infra.settings import Settings


class PipelineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, settings: Settings, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        source = s3_assets.Asset(self, "Source", path=str(REPO_ROOT), exclude=SOURCE_EXCLUDE)
        pipeline = DeploymentPipeline(
            self,
            "Pipeline",
            settings=settings,
            project_name=settings.project_name,
            source_bucket=source.bucket,
            source_key=source.s3_object_key,
        )
        CfnOutput(self, "BuildProjectName", value=pipeline.project.project_name)
        CfnOutput(self, "ApprovalRuleName", value=pipeline.rule.rule_name)
