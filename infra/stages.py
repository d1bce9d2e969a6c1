"""Every stack of one stage, named `abtest-<concern>-<stage>`."""

from __future__ import annotations

import sys

import aws_cdk as cdk

from infra import nag
from infra.api_stack import ApiStack
from infra.deployment_config import CONFIG_DIR, DeploymentConfig, config_for_stage
from infra.deployment_stack import DeploymentStack
from infra.model_registry import SelectedVariant, pinned_variants, select_variants
from infra.names import deployment_stack_name
from infra.pipeline_stack import PipelineStack
from infra.service_catalog_stack import ServiceCatalogStack
from infra.settings import Settings, settings_from_context


def build_stage(
    app: cdk.App, variants: list[SelectedVariant] | None = None
) -> dict[str, cdk.Stack]:
    """`variants` replaces the model selection (tests); otherwise `selected_variants` runs."""
    nag.check(app)
    settings = settings_from_context(app.node.get_all_context())
    stage = settings.stage_name
    stacks: dict[str, cdk.Stack] = {
        "api": ApiStack(app, f"abtest-api-{stage}", settings),
        "pipeline": PipelineStack(
            app, f"abtest-pipeline-{settings.project_name}-{stage}", settings
        ),
        "service_catalog": ServiceCatalogStack(app, f"abtest-service-catalog-{stage}", settings),
    }
    # A stage may run the API alone; its endpoint then comes from elsewhere.
    if not (CONFIG_DIR / f"{stage}.json").exists():
        print(f"note: no infra/config/{stage}.json, so no deployment stack", file=sys.stderr)
        return stacks
    config = config_for_stage(stage)
    if variants is None:
        variants = selected_variants(settings, config)
    if variants:
        stacks["deployment"] = DeploymentStack(
            app,
            deployment_stack_name(settings.project_name, stage),
            settings,
            config,
            variants,
        )
    return stacks


def selected_variants(settings: Settings, config: DeploymentConfig) -> list[SelectedVariant]:
    """Registry query only when asked; a config that pins every version needs none."""
    if settings.select_models:
        import boto3  # only the pipeline's CodeBuild step gets here

        return select_variants(boto3.client("sagemaker"), settings.project_name, config)
    if config.pins_every_version:
        return pinned_variants(
            config, settings.project_name, cdk.Aws.PARTITION, cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID
        )
    print(
        f"note: {deployment_stack_name(settings.project_name, settings.stage_name)} "
        "not synthesized: "
        f"infra/config/{settings.stage_name}.json takes the latest approved models; "
        "add -c select_models=true (needs AWS credentials) or name every version.",
        file=sys.stderr,
    )
    return []
