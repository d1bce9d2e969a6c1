"""The deployment pipeline (direct and as the Service Catalog product that provisions it)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.synth import Synth, resources

# Reads the synthesized stages: CDK synth runs node, seconds a stage.
pytestmark = pytest.mark.slow


def _build_project(template: dict[str, Any]) -> dict[str, Any]:
    (project,) = resources(template, "AWS::CodeBuild::Project").values()
    return project["Properties"]


def test_approval_in_either_registry_group_starts_the_build(stage: Synth) -> None:
    pipeline = stage.templates["pipeline"]
    (project_id,) = resources(pipeline, "AWS::CodeBuild::Project")
    (rule,) = resources(pipeline, "AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {
            "ModelPackageGroupName": ["reviews-champion", "reviews-challenger"],
            "ModelApprovalStatus": ["Approved"],
        },
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [project_id, "Arn"]}
    (dlq,) = resources(pipeline, "AWS::SQS::Queue")
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq, "Arn"]}}


def test_build_queries_the_registry_and_deploys_the_stage_endpoint(stage: Synth) -> None:
    project = _build_project(stage.templates["pipeline"])
    assert project["Name"] == f"abtest-deploy-reviews-{stage.stage}"
    assert {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]} == {
        "PROJECT_NAME": "reviews",
        "STAGE_NAME": stage.stage,
    }
    assert project["Environment"]["PrivilegedMode"] is False  # no Docker anywhere
    commands = json.loads(project["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    deploy = commands[-1]
    assert f"cdk deploy abtest-deployment-reviews-{stage.stage}" in deploy
    assert "-c select_models=true" in deploy
    assert "--require-approval never" in deploy


def test_build_role_may_use_the_cdk_bootstrap_roles_and_list_packages(stage: Synth) -> None:
    pipeline = stage.templates["pipeline"]
    statements = [
        s
        for p in resources(pipeline, "AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assume = next(s for s in statements if s["Action"] == "sts:AssumeRole")
    assert ":role/cdk-hnb659fds-*-" in json.dumps(assume["Resource"])
    assert any(s["Action"] == "sagemaker:ListModelPackages" for s in statements)
    assert not any("sagemaker:CreateEndpoint" in str(s["Action"]) for s in statements)


def test_service_catalog_portfolio_offers_the_pipeline_to_studio(stage: Synth) -> None:
    catalog = stage.templates["service_catalog"]
    (portfolio,) = resources(catalog, "AWS::ServiceCatalog::Portfolio").values()
    assert portfolio["Properties"]["DisplayName"] == f"abtest A/B testing ({stage.stage})"
    (product,) = resources(catalog, "AWS::ServiceCatalog::CloudFormationProduct").values()
    assert product["Properties"]["Name"] == "abtest-deployment-pipeline"
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in product["Properties"]["Tags"]
    (association,) = resources(
        catalog, "AWS::ServiceCatalog::PortfolioPrincipalAssociation"
    ).values()
    assert association["Properties"]["PrincipalARN"] == {"Ref": "ExecutionRoleArn"}
    (constraint,) = resources(catalog, "AWS::ServiceCatalog::LaunchRoleConstraint").values()
    (launch_role,) = resources(catalog, "AWS::IAM::Role")
    assert constraint["Properties"]["RoleArn"] == {"Fn::GetAtt": [launch_role, "Arn"]}
    assert set(catalog["Outputs"]) >= {"SourceBucket", "SourceKey", "PortfolioId", "ProductId"}


def test_product_template_takes_the_sagemaker_project_parameters(stage: Synth) -> None:
    (path,) = stage.outdir.glob("*.product.template.json")
    product = json.loads(path.read_text())
    assert set(product["Parameters"]) >= {
        "SageMakerProjectName",
        "SageMakerProjectId",
        "StageName",
        "SourceBucket",
        "SourceKey",
    }
    assert product["Parameters"]["StageName"]["Default"] == stage.stage
    project = _build_project(product)
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables == {
        "PROJECT_NAME": {"Ref": "SageMakerProjectName"},
        "STAGE_NAME": {"Ref": "StageName"},
    }
    assert {"Key": "sagemaker:project-id", "Value": {"Ref": "SageMakerProjectId"}} in project[
        "Tags"
    ]
    assert resources(product, "AWS::Events::Rule")
