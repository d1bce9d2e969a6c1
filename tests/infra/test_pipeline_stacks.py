"""The deployment pipeline (direct and as the Service Catalog product that provisions it)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

from tests.infra.synth import REPO, Synth, resources, role_statements

# Slow: reads the synthesized stages: CDK synth runs node, seconds a stage.
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
    pipeline = stage.templates["pipeline"]
    project = _build_project(pipeline)
    assert project["Name"] == f"abtest-deploy-reviews-{stage.stage}"
    (deploy_role,) = _roles_assumed_by(pipeline, "cloudformation.amazonaws.com")
    assert {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]} == {
        "PROJECT_NAME": "reviews",
        "STAGE_NAME": stage.stage,
        "DEPLOY_STACK": f"abtest-deployment-reviews-{stage.stage}",
        "DEPLOY_ROLE_ARN": {"Fn::GetAtt": [deploy_role, "Arn"]},
    }
    assert project["Environment"]["PrivilegedMode"] is False  # no Docker anywhere
    synth, deploy = json.loads(project["Source"]["BuildSpec"])["phases"]["build"]["commands"][-2:]
    assert synth.startswith('npx cdk synth "$DEPLOY_STACK"')
    assert "-c select_models=true" in synth
    assert deploy.startswith('aws cloudformation deploy --stack-name "$DEPLOY_STACK"')
    assert '--role-arn "$DEPLOY_ROLE_ARN"' in deploy
    assert 'cdk.out/"$DEPLOY_STACK".template.json' in deploy
    # The build's Node.js is one the CDK supports, as package.json's engines say.
    runtimes = json.loads(project["Source"]["BuildSpec"])["phases"]["install"]["runtime-versions"]
    engines = json.loads((REPO / "package.json").read_text())["engines"]["node"]
    assert f"^{runtimes['nodejs']}" in engines.split(" || ")


def _roles_assumed_by(template: dict[str, Any], service: str) -> list[str]:
    return [
        logical_id
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": service}
    ]


def _grants(template: dict[str, Any], role_id: str) -> list[tuple[str, str, Any]]:
    """(action, resource as JSON, condition) for every statement of the role."""
    return [
        (action, json.dumps(resource), statement.get("Condition"))
        for statement in role_statements(template, role_id)
        for action in _listed(statement["Action"])
        for resource in _listed(statement["Resource"])
    ]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _product_template(synth: Synth) -> dict[str, Any]:
    (path,) = synth.outdir.glob("*.product.template.json")
    return json.loads(path.read_text())


def test_build_never_assumes_the_cdk_bootstrap_roles(stage: Synth) -> None:
    """The bootstrap deploy role passes an administrator role to CloudFormation."""
    for template in (stage.templates["pipeline"], _product_template(stage)):
        (build_role,) = _roles_assumed_by(template, "codebuild.amazonaws.com")
        (deploy_role,) = _roles_assumed_by(template, "cloudformation.amazonaws.com")
        grants = _grants(template, build_role)
        assert not [g for g in grants if g[0].startswith("sts:")]
        assert not [g for g in grants if ":role/cdk-" in g[1]]
        cloudformation = {(a, r) for a, r, _ in grants if a.startswith("cloudformation:")}
        assert {a for a, _ in cloudformation} == {
            "cloudformation:DescribeStacks",
            "cloudformation:CreateChangeSet",
            "cloudformation:DescribeChangeSet",
            "cloudformation:ExecuteChangeSet",
        }
        # Only the project's deployment stack (its name, then the stack id).
        assert all(f"-{stage.stage}/*" in r for _, r in cloudformation)
        assert all(":stack/abtest-deployment-" in r for _, r in cloudformation)
        assert [(a, r, c) for a, r, c in grants if a == "iam:PassRole"] == [
            (
                "iam:PassRole",
                json.dumps({"Fn::GetAtt": [deploy_role, "Arn"]}),
                {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
            )
        ]
        assert {a for a, r, _ in grants if r == '"*"'} == {"sagemaker:ListModelPackages"}


def test_deploy_role_creates_only_what_the_deployment_stack_holds(stage: Synth) -> None:
    pipeline = stage.templates["pipeline"]
    (deploy_role,) = _roles_assumed_by(pipeline, "cloudformation.amazonaws.com")
    grants = _grants(pipeline, deploy_role)
    assert {a.split(":")[0] for a, _, _ in grants} == {"sagemaker", "iam", "cloudwatch"}
    assert all(r != '"*"' and not a.endswith("*") for a, r, _ in grants)
    endpoint = f":endpoint/abtest-{stage.stage}-reviews"
    endpoint_actions = {a for a, r, _ in grants if endpoint in r}
    assert endpoint_actions >= {"sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"}
    # The endpoint exactly: no other project's or stage's endpoint.
    assert all(r.endswith(f'{endpoint}"]]}}') for a, r, _ in grants if ":endpoint/" in r)
    # IAM only on the model role's path, passed only to SageMaker.
    iam = [(a, r, c) for a, r, c in grants if a.startswith("iam:")]
    assert iam and all(f":role/abtest/reviews/{stage.stage}/*" in r for _, r, _ in iam)
    assert [c for a, _, c in iam if a == "iam:PassRole"] == [
        {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    ]
    (model_role,) = resources(stage.templates["deployment"], "AWS::IAM::Role").values()
    assert model_role["Properties"]["Path"] == f"/abtest/reviews/{stage.stage}/"
    # The pipeline deploys the template with its own role: no bootstrap SSM parameter to read.
    assert "BootstrapVersion" not in stage.templates["deployment"].get("Parameters", {})


def test_build_installs_only_hash_pinned_dependencies(stage: Synth) -> None:
    install = json.loads(_build_project(stage.templates["pipeline"])["Source"]["BuildSpec"])[
        "phases"
    ]["install"]["commands"]
    pips = [c for c in install if " pip " in f" {c} " or "/pip " in c]
    assert pips == [
        ".venv/bin/pip install --quiet --no-deps --require-hashes -r infra/build-requirements.txt"
    ]
    assert [c for c in install if c.startswith("npm ")] == [
        "npm ci --no-audit --no-fund --ignore-scripts --loglevel=error"
    ]


def test_build_requirements_pin_what_synth_imports_with_hashes() -> None:
    from packaging.requirements import Requirement

    text = (REPO / "infra" / "build-requirements.txt").read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+)", text, re.M
    )
    pins = {name.lower(): version for name, version, _ in entries}
    # Every requirement line is pinned and hashed (pip refuses anything else with hashes on).
    assert len(entries) == len(re.findall(r"^[A-Za-z0-9]", text, re.M))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [
        Requirement(r)
        for r in pyproject["dependencies"]
        + pyproject["optional-dependencies"]["cdk"]
        + pyproject["optional-dependencies"]["aws"]
    ]
    for requirement in wanted:
        if requirement.name == "aws-lambda-powertools":
            continue  # the Lambda layer ships it; synth never imports it
        assert requirement.name in pins, requirement.name
        assert requirement.specifier.contains(pins[requirement.name]), requirement


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
    assert set(catalog["Outputs"]) == {"PortfolioId", "ProductId"}


def test_product_template_takes_only_the_sagemaker_project_parameters(stage: Synth) -> None:
    """A launcher picks the project, never the code the build runs nor another stage."""
    product = _product_template(stage)
    assert set(product["Parameters"]) == {"SageMakerProjectName", "SageMakerProjectId"}
    project = _build_project(product)
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables["PROJECT_NAME"] == {"Ref": "SageMakerProjectName"}
    assert variables["STAGE_NAME"] == stage.stage
    assert {"Key": "sagemaker:project-id", "Value": {"Ref": "SageMakerProjectId"}} in project[
        "Tags"
    ]
    assert resources(product, "AWS::Events::Rule")


def test_product_build_source_is_the_asset_the_catalog_stack_publishes(stage: Synth) -> None:
    stack = json.loads((stage.outdir / "stacks.json").read_text())["service_catalog"]
    assets = json.loads((stage.outdir / f"{stack}.assets.json").read_text())["files"]
    zips = [a for a in assets.values() if a["source"].get("packaging") == "zip"]
    (source,) = [d for a in zips for d in a["destinations"].values()]
    location = _build_project(_product_template(stage))["Source"]["Location"]
    assert json.dumps(location).endswith(f'/{source["objectKey"]}"]]}}')
    assert "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}" in json.dumps(location)


def test_launch_role_touches_only_the_stacks_and_objects_the_product_creates(
    stage: Synth,
) -> None:
    catalog = stage.templates["service_catalog"]
    (launch_role,) = _roles_assumed_by(catalog, "servicecatalog.amazonaws.com")
    grants = _grants(catalog, launch_role)
    stack_writes = {
        "cloudformation:CreateStack",
        "cloudformation:UpdateStack",
        "cloudformation:DeleteStack",
        "cloudformation:SetStackPolicy",
    }
    account = {"Ref": "AWS::AccountId"}
    provisioned = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":cloudformation:",
                {"Ref": "AWS::Region"},
                ":",
                account,
                ":stack/SC-",
                account,
                "-pp-*/*",
            ],
        ]
    }
    # Service Catalog's own stacks, SC-<account>-pp-<id>, and no others.
    assert {(a, r) for a, r, _ in grants if a in stack_writes} == {
        (a, json.dumps(provisioned)) for a in stack_writes
    }
    # Only the read-only template checks, and Service Catalog's tagged template copies, on "*".
    assert {(a, c is not None) for a, r, c in grants if r == '"*"'} == {
        ("cloudformation:GetTemplateSummary", False),
        ("cloudformation:ValidateTemplate", False),
        ("s3:GetObject", True),
    }
    (s3,) = [c for a, _, c in grants if a == "s3:GetObject"]
    assert s3 == {"StringEquals": {"s3:ExistingObjectTag/servicecatalog:provisioning": "true"}}
