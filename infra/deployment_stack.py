"""One multi-variant SageMaker endpoint: the champion and its challengers.

The variants arrive already selected (see `model_registry`), so synth never
calls AWS. The endpoint carries the `ab-testing:*` tags the register
function reads, and its name starts with its stage's prefix, the one that
stage's API may invoke (see `names`).
"""

from __future__ import annotations

import dataclasses

from aws_cdk import ArnFormat, CfnOutput, CfnTag, DefaultStackSynthesizer, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from abtest.adapters.endpoint_tags import tags_for
from infra import nag
from infra.deployment_config import DeploymentConfig
from infra.model_registry import SelectedVariant
from infra.monitoring import CONVERSIONS, INVOCATIONS, reward_rate, variant_metric
from infra.names import endpoint_config_name, endpoint_name, model_role_path
from infra.settings import Settings


class DeploymentStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        settings: Settings,
        config: DeploymentConfig,
        variants: list[SelectedVariant],
        **kwargs,
    ) -> None:
        # No bootstrap-version rule: the pipeline deploys this one template with
        # `aws cloudformation deploy` and a role scoped to it, never the CDK bootstrap roles.
        kwargs.setdefault(
            "synthesizer", DefaultStackSynthesizer(generate_bootstrap_version_rule=False)
        )
        super().__init__(scope, construct_id, **kwargs)
        if not variants:
            raise ValueError("an A/B testing endpoint needs at least one variant")
        name = endpoint_name(settings)
        role = self._execution_role(model_role_path(settings.project_name, settings.stage_name))

        production_variants = []
        for variant in variants:
            model = sagemaker.CfnModel(
                self,
                f"Model{variant.variant_name}",
                execution_role_arn=role.role_arn,
                enable_network_isolation=True,
                containers=[
                    sagemaker.CfnModel.ContainerDefinitionProperty(
                        model_package_name=variant.model_package_arn
                    )
                ],
            )
            # The role's policy must exist before SageMaker checks it can pull the image.
            model.node.add_dependency(role)
            production_variants.append(
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=variant.variant_name,
                    model_name=model.attr_model_name,
                    initial_instance_count=variant.instance_count,
                    instance_type=variant.instance_type,
                    initial_variant_weight=variant.initial_variant_weight,
                )
            )
        endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            endpoint_config_name=endpoint_config_name(
                settings, [dataclasses.asdict(v) for v in variants]
            ),
            production_variants=production_variants,
        )
        endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
            tags=[CfnTag(key=key, value=value) for key, value in tags_for(config).items()],
        )
        self._dashboard(name, variants)
        CfnOutput(self, "EndpointName", value=endpoint.attr_endpoint_name)
        CfnOutput(
            self,
            "Variants",
            value=", ".join(f"{v.variant_name}={v.model_package_arn}" for v in variants),
        )
        self._suppress(role)

    def _execution_role(self, path: str) -> iam.Role:
        """What the model containers may do: pull images and artifacts, write their logs."""
        role = iam.Role(
            self,
            "ModelExecutionRole",
            path=path,
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Runs the A/B testing endpoint's model variants.",
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                resources=[f"arn:{self.partition}:ecr:{self.region}:*:repository/*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[f"arn:{self.partition}:s3:::sagemaker-{self.region}-{self.account}/*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/Endpoints/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}},
            )
        )
        return role

    def _dashboard(self, name: str, variants: list[SelectedVariant]) -> None:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=name)
        names = [v.variant_name for v in variants]
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Invocations per variant",
                left=[variant_metric(INVOCATIONS, name, v).with_(label=v) for v in names],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Conversions per variant",
                left=[variant_metric(CONVERSIONS, name, v).with_(label=v) for v in names],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Reward rate per variant",
                left=[reward_rate(name, v, i) for i, v in enumerate(names)],
                width=8,
            ),
        )

    def _suppress(self, role: iam.Role) -> None:
        logs = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group"
        nag.suppress_each(
            role,
            "IAM5",
            {
                "Resource::*": "ecr:GetAuthorizationToken has no resource-level form; "
                "cloudwatch:PutMetricData only in SageMaker's endpoint namespace (condition).",
                "Resource::arn:<AWS::Partition>:ecr:<AWS::Region>:*:repository/*": "Model "
                "package images live in registry-owned ECR repositories of other accounts "
                "(built-in algorithms): ecr:BatchGetImage, ecr:GetDownloadUrlForLayer.",
                "Resource::arn:<AWS::Partition>:s3:::sagemaker-<AWS::Region>-<AWS::AccountId>/*": (
                    "Model artifacts under the SageMaker default bucket: s3:GetObject."
                ),
                f"Resource::{logs}:/aws/sagemaker/Endpoints/*": (
                    "The endpoint's container logs, one group per endpoint: logs:CreateLogGroup, "
                    "logs:CreateLogStream, logs:PutLogEvents."
                ),
            },
        )
